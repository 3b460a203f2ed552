// Chatty and vanishing clients, scaled down from 1,000 clients for 5 minutes to 200 clients for
// 3 seconds: each sends a small event every 10 ms, then half close cleanly and half vanish
// without a close frame. The connection gauge returns to 0 within ping interval + timeout.
//
// SOCKETFLEET_SOAK=1 (`make soak`) runs the field case at full scale: 1,000 raw websocket clients
// spread over worker threads, each publishing to its own room every 10 ms for 5 minutes, at the
// default ping of 25 s / 20 s. Then half close and half vanish with a TCP RST. The gateway's RSS must
// plateau while they send and return near its baseline within ping interval + timeout.
// SOCKETFLEET_SOAK_SECONDS shortens the sending phase and SOCKETFLEET_SOAK_WORKERS sets the number
// of client threads (2 by default), for trial runs.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { isMainThread, parentPort, Worker, workerData } = require("node:worker_threads");
const { SOAK, connect, metric, mib, rssBytes, startGateway, waitFor, within } = require("./helpers");

const CLIENTS = 200;
const PING_MS = 1000;

const SOAK_CLIENTS = 1000;
const SOAK_SEND_MS = Number(process.env.SOCKETFLEET_SOAK_SECONDS || 300) * 1000;
const SOAK_WORKERS = Number(process.env.SOCKETFLEET_SOAK_WORKERS || 2);
const SOAK_PING_INTERVAL_MS = 25000;
const SOAK_PING_TIMEOUT_MS = 20000;
const WARM_UP_SEND_MS = 10000;
const RSS_SAMPLE_MS = 5000;
// RSS margin for the plateau and for "near baseline", as a share of what 1,000 connected clients
// add to a cold gateway (3.2 to 3.3 MiB in trial runs, so about 0.8 MiB). The second half's peak
// stays within it of the first half's peak. The RSS after every client left stays within it of
// the warm baseline. Leaking a quarter of each client's memory would exceed it.
const NEAR_SHARE = 0.25;

if (!isMainThread) {
  runClients(workerData);
} else if (SOAK) {
  test("gateway memory plateaus and returns at full scale", soakCase);
} else {
  test("gauges return to zero after chatty clients close or vanish", scaledCase);
}

async function scaledCase(t) {
  const gateway = await startGateway(["--ping-interval", `${PING_MS}ms`, "--ping-timeout", `${PING_MS}ms`]);
  t.after(() => gateway.stop());

  const sockets = [];
  for (let i = 0; i < CLIENTS; i++) sockets.push(await connect(gateway.url));
  await Promise.all(sockets.map((s, i) => s.emitWithAck("join", { room: `chat-${i % 20}` })));
  assert.equal(await metric(gateway, "socket_io_connected"), CLIENTS);

  const timers = sockets.map((socket, i) =>
    setInterval(() => socket.emit("publish", { room: `chat-${i % 20}`, event: "tick", data: i }), 10),
  );
  await new Promise((r) => setTimeout(r, 3000));
  timers.forEach(clearInterval);

  sockets.forEach((socket, i) => {
    if (i % 2 === 0) {
      socket.close();
    } else {
      // Vanish: destroy the TCP socket under the websocket, so no close frame is sent.
      socket.io.engine.transport.ws._socket.destroy();
    }
  });

  await waitFor(
    "socket_io_connected to return to 0",
    async () => (await metric(gateway, "socket_io_connected")) === 0,
    2 * (PING_MS + PING_MS) + 5000,
  );
  await waitFor("open connections to return to 0", async () => (await metric(gateway, "socketfleet_open_connections")) === 0);
  const process = await fetch(`${gateway.adminUrl}/livez`);
  assert.equal(process.status, 200);
}

async function soakCase(t) {
  const gateway = await startGateway([
    "--ping-interval",
    `${SOAK_PING_INTERVAL_MS}ms`,
    "--ping-timeout",
    `${SOAK_PING_TIMEOUT_MS}ms`,
  ]);
  t.after(() => gateway.stop());
  const cold = rssBytes(gateway);

  const perWorker = Math.ceil(SOAK_CLIENTS / SOAK_WORKERS);
  const workers = [];
  for (let w = 0; w < SOAK_WORKERS; w++) {
    const first = w * perWorker;
    const count = Math.min(perWorker, SOAK_CLIENTS - first);
    workers.push(startWorker({ port: gateway.port, first, count }));
  }
  t.after(() => Promise.all(workers.map((w) => w.worker.terminate())));

  // A short warm-up round first: the allocator keeps part of what a round freed for reuse, and
  // code pages touched under load stay resident, so "near baseline" is measured against the RSS
  // after this round. The cold RSS is reported beside it.
  const warmUp = await soakRound(gateway, workers, WARM_UP_SEND_MS);
  const warm = warmUp.after;
  const round = await soakRound(gateway, workers, SOAK_SEND_MS);

  const footprint = round.connected - warm;
  const margin = NEAR_SHARE * (warmUp.connected - cold);
  const half = Math.floor(round.samples.length / 2);
  const firstPeak = Math.max(...round.samples.slice(0, half).map((s) => s.rss));
  const secondPeak = Math.max(...round.samples.slice(half).map((s) => s.rss));
  t.diagnostic(
    `G7: ${SOAK_CLIENTS} clients for ${round.sendingMs} ms: sent ${round.sent} events ` +
      `(${Math.round(round.sent / (round.sendingMs / 1000))}/s, target ${SOAK_CLIENTS * 100}/s), received ${round.received}`,
  );
  t.diagnostic(
    `G7 RSS: cold ${mib(cold)}, warm-up connected ${mib(warmUp.connected)}, warm baseline ${mib(warm)}, ` +
      `connected ${mib(round.connected)} (+${mib(footprint)}), first-half peak ${mib(firstPeak)}, ` +
      `second-half peak ${mib(secondPeak)}, after ${mib(round.after)}, margin ${mib(margin)}; ` +
      `gauge 0 after ${round.gaugeMs} ms (warm-up ${warmUp.gaugeMs} ms)`,
  );
  t.diagnostic(`G7 RSS samples (s:MiB): ${round.samples.map((s) => `${Math.round(s.at / 1000)}:${(s.rss / 1048576).toFixed(1)}`).join(" ")}`);

  assert.ok(secondPeak <= firstPeak + margin, `RSS kept growing: ${mib(secondPeak)} > ${mib(firstPeak)} + ${mib(margin)}`);
  assert.ok(round.after <= warm + margin, `RSS did not return near baseline: ${mib(round.after)} > ${mib(warm)} + ${mib(margin)}`);
  const livez = await fetch(`${gateway.adminUrl}/livez`);
  assert.equal(livez.status, 200);
}

/** Connects every client, lets them send for `sendMs`, makes them leave and waits for the gauges. */
async function soakRound(gateway, workers, sendMs) {
  workers.forEach((w) => w.worker.postMessage("connect"));
  await within("every client to connect and join", Promise.all(workers.map((w) => w.next("ready"))), 120000);
  assert.equal(await metric(gateway, "socket_io_connected"), SOAK_CLIENTS);
  const connected = rssBytes(gateway);

  const samples = [];
  const started = Date.now();
  workers.forEach((w) => w.worker.postMessage("start"));
  while (Date.now() - started < sendMs) {
    await new Promise((r) => setTimeout(r, Math.min(RSS_SAMPLE_MS, sendMs)));
    samples.push({ at: Date.now() - started, rss: rssBytes(gateway) });
    // Every client must still be connected while it sends: a drop here is a failure of its own.
    assert.equal(await metric(gateway, "socket_io_connected"), SOAK_CLIENTS, "a chatty client was dropped");
  }
  workers.forEach((w) => w.worker.postMessage("stop"));
  const counts = await within("the workers' counts", Promise.all(workers.map((w) => w.next("stopped"))), 30000);
  const sendingMs = Date.now() - started;

  workers.forEach((w) => w.worker.postMessage("leave"));
  await within("every client to close or vanish", Promise.all(workers.map((w) => w.next("left"))), 30000);
  const left = Date.now();

  // The gauges and RSS settle within ping interval + timeout of the last client leaving.
  const settleMs = SOAK_PING_INTERVAL_MS + SOAK_PING_TIMEOUT_MS;
  await waitFor("socket_io_connected to return to 0", async () => (await metric(gateway, "socket_io_connected")) === 0, settleMs, 250);
  const gaugeMs = Date.now() - left;
  await waitFor("open connections to return to 0", async () => (await metric(gateway, "socketfleet_open_connections")) === 0, settleMs, 250);
  await new Promise((r) => setTimeout(r, Math.max(0, settleMs - (Date.now() - left))));
  return {
    connected,
    samples,
    sendingMs,
    sent: counts.reduce((sum, c) => sum + c.sent, 0),
    received: counts.reduce((sum, c) => sum + c.received, 0),
    gaugeMs,
    after: rssBytes(gateway),
  };
}

/** Starts a worker thread running `runClients`; `next(kind)` resolves with its next message of that kind. */
function startWorker(data) {
  const worker = new Worker(__filename, { workerData: data });
  const waiting = new Map();
  const arrived = new Map();
  worker.on("message", (message) => {
    const waiter = waiting.get(message.kind);
    if (waiter) {
      waiting.delete(message.kind);
      waiter.resolve(message);
    } else {
      arrived.set(message.kind, message);
    }
  });
  worker.on("error", (err) => {
    for (const waiter of waiting.values()) waiter.reject(err);
  });
  return {
    worker,
    next(kind) {
      if (arrived.has(kind)) {
        const message = arrived.get(kind);
        arrived.delete(kind);
        return Promise.resolve(message);
      }
      return new Promise((resolve, reject) => waiting.set(kind, { resolve, reject }));
    },
  };
}

/** Worker thread: `count` raw Engine.IO websocket clients that join, send every 10 ms, then leave. */
function runClients({ port, first, count }) {
  const WebSocket = require("ws");
  let clients = [];
  let received = 0;
  let sent = 0;
  let timer;
  const connectAll = async () => {
    clients = [];
    received = 0;
    sent = 0;
    for (let n = 0; n < count; n++) {
      const i = first + n;
      const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
      const joined = new Promise((resolve, reject) => {
        ws.on("error", reject);
        ws.on("message", (data) => {
          const message = data.toString();
          if (message === "2") ws.send("3");
          else if (message.startsWith("0{")) ws.send("40");
          else if (message.startsWith("40")) ws.send(`420["join",{"room":"chat-${i}"}]`);
          else if (message.startsWith("430")) resolve();
          else received++;
        });
      });
      await joined;
      ws.removeAllListeners("error");
      ws.on("error", () => {});
      clients.push({ i, ws, frame: `42["publish",{"room":"chat-${i}","event":"tick","data":${i}}]` });
    }
    parentPort.postMessage({ kind: "ready" });
  };
  parentPort.on("message", (command) => {
    if (command === "connect") {
      connectAll();
    } else if (command === "start") {
      timer = setInterval(() => {
        for (const c of clients) c.ws.send(c.frame);
        sent += clients.length;
      }, 10);
    } else if (command === "stop") {
      clearInterval(timer);
      parentPort.postMessage({ kind: "stopped", sent, received });
    } else if (command === "leave") {
      for (const c of clients) {
        // Even clients close cleanly; odd clients vanish with a TCP RST and no close frame.
        if (c.i % 2 === 0) c.ws.close();
        else c.ws._socket.resetAndDestroy();
      }
      parentPort.postMessage({ kind: "left" });
    }
  });
}
