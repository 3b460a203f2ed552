// Chatty and vanishing clients, scaled down from 1,000 clients for 5 minutes to 200 clients for
// 3 seconds: each sends a small event every 10 ms, then half close cleanly and half vanish
// without a close frame. The connection gauge returns to 0 within ping interval + timeout.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, metric, startGateway, waitFor } = require("./helpers");

const CLIENTS = 200;
const PING_MS = 1000;

test("gauges return to zero after chatty clients close or vanish", async (t) => {
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
});
