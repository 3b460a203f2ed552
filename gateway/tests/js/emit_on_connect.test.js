// Emit on connect: a client emits `join` with an ack inside its own connect callback, as most
// applications do. The case runs 2,000 clients one after another; every ack must arrive.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");
const { startGateway, within } = require("./helpers");

const CLIENTS = 2000;

test("every ack of a join emitted in the connect callback arrives", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());

  let acked = 0;
  for (let i = 0; i < CLIENTS; i++) {
    const socket = io(gateway.url, { transports: ["websocket"], reconnection: false, forceNew: true });
    const ack = new Promise((resolve, reject) => {
      socket.on("connect", () => socket.emit("join", { room: `room-${i % 10}` }, resolve));
      socket.on("connect_error", reject);
    });
    const reply = await within(`ack of client ${i}`, ack, 5000);
    assert.deepEqual(reply, { ok: true });
    acked++;
    socket.close();
  }
  assert.equal(acked, CLIENTS);
});
