// socket.io-client with its default settings starts with long-polling, then upgrades to a
// websocket. With polling enabled the gateway serves it. With the websocket-only default a client
// must ask for the websocket transport, so a default client gets a connect error.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");
const { request, startGateway, waitFor, within } = require("./helpers");

function connectWithDefaults(url) {
  const socket = io(url, { reconnection: false, forceNew: true });
  const outcome = new Promise((resolve) => {
    socket.once("connect", () => resolve("connected"));
    socket.once("connect_error", (err) => resolve(`connect_error: ${err.message}`));
  });
  return { socket, outcome: within("default client to connect or fail", outcome) };
}

test("a default client connects and upgrades when polling is enabled", async (t) => {
  const gateway = await startGateway(["--transport", "polling", "--transport", "websocket"]);
  t.after(() => gateway.stop());
  const { socket, outcome } = connectWithDefaults(gateway.url);
  t.after(() => socket.close());
  assert.equal(await outcome, "connected");
  assert.deepEqual(await request(socket, "join", { room: "r" }), { ok: true });
  await waitFor("the upgrade to websocket", () => socket.io.engine.transport.name === "websocket");
  assert.deepEqual(await request(socket, "publish", { room: "r", event: "e", data: 1 }), { ok: true });
});

test("a default client gets a connect error from a websocket-only gateway", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());
  const { socket, outcome } = connectWithDefaults(gateway.url);
  t.after(() => socket.close());
  assert.match(await outcome, /^connect_error/);
});
