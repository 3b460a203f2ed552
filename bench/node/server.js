// Node reference server for socketfleet's benchmarks: socket.io 4.8 serving the same client events as
// the gateway (join, leave, publish, each acked with {ok: true} or {error}), websocket only, with
// @socket.io/redis-adapter's sharded adapter on a Redis Cluster when REDIS_URL is set.
//
// Settings come from the environment:
//   PORT               socket port (default 3000)
//   STATS_PORT         HTTP port serving GET /stats as JSON (default: no stats server)
//   REDIS_URL          one Redis Cluster node, e.g. redis://127.0.0.1:7000 (unset: in-memory adapter)
//   SUBSCRIPTION_MODE  sharded adapter mode: dynamic (a channel per public room, the default) or
//                      static (one channel per namespace)
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3000);
const statsPort = process.env.STATS_PORT ? Number(process.env.STATS_PORT) : null;
const redisUrl = process.env.REDIS_URL || "";
const subscriptionMode = process.env.SUBSCRIPTION_MODE || "dynamic";

// Messages this server read from Redis pub/sub, for the benchmark's sharding figure.
let adapterMessagesReceived = 0;
let adapterBytesReceived = 0;

async function createAdapter() {
  if (!redisUrl) {
    return undefined;
  }
  const { createCluster } = require("redis");
  const { createShardedAdapter } = require("@socket.io/redis-adapter");

  const pubClient = createCluster({ rootNodes: [{ url: redisUrl }] });
  const subClient = pubClient.duplicate();
  pubClient.on("error", (err) => console.error("redis pub client error:", err.message));
  subClient.on("error", (err) => console.error("redis sub client error:", err.message));
  await Promise.all([pubClient.connect(), subClient.connect()]);

  // Count what the adapter reads by wrapping its message entry point; the adapter itself keeps no
  // counter. The wrapper adds one increment per message and changes nothing else.
  const createShardedAdapterInstance = createShardedAdapter(pubClient, subClient, { subscriptionMode });
  return function (nsp) {
    const adapter = createShardedAdapterInstance(nsp);
    const onRawMessage = adapter.onRawMessage.bind(adapter);
    adapter.onRawMessage = (raw, channel) => {
      adapterMessagesReceived += 1;
      adapterBytesReceived += raw.length;
      return onRawMessage(raw, channel);
    };
    return adapter;
  };
}

function roomOf(payload) {
  if (payload && typeof payload.room === "string" && payload.room.length > 0) {
    return payload.room;
  }
  return null;
}

function ackWith(ack, value) {
  if (typeof ack === "function") {
    ack(value);
  }
}

async function main() {
  const adapter = await createAdapter();
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    adapter,
  });

  io.on("connection", (socket) => {
    socket.on("join", (payload, ack) => {
      const room = roomOf(payload);
      if (room === null) {
        return ackWith(ack, { error: "missing room" });
      }
      socket.join(room);
      ackWith(ack, { ok: true });
    });

    socket.on("leave", (payload, ack) => {
      const room = roomOf(payload);
      if (room === null) {
        return ackWith(ack, { error: "missing room" });
      }
      socket.leave(room);
      ackWith(ack, { ok: true });
    });

    socket.on("publish", (payload, ack) => {
      const room = roomOf(payload);
      if (room === null || typeof payload.event !== "string") {
        return ackWith(ack, { error: "missing room or event" });
      }
      io.to(room).emit(payload.event, payload.data);
      ackWith(ack, { ok: true });
    });
  });

  if (statsPort !== null) {
    http
      .createServer((req, res) => {
        const cpu = process.cpuUsage();
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            connected: io.engine.clientsCount,
            adapterMessagesReceived,
            adapterBytesReceived,
            cpuMicros: cpu.user + cpu.system,
            rssBytes: process.memoryUsage.rss(),
          }),
        );
      })
      .listen(statsPort, "127.0.0.1");
  }

  httpServer.listen(port, "0.0.0.0", () => {
    console.log(`node reference listening on ${port} (redis: ${redisUrl || "none"}, mode: ${subscriptionMode})`);
  });

  const stop = () => {
    io.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error("node reference failed to start:", err);
  process.exit(1);
});
