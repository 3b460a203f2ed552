// 2,000 socket.io clients connect at the same time and each emits `join` and then `publish` to its
// room inside its connect callback: every ack arrives, each ok, and once all close the gauge and
// the open connections return to 0.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");
const { metric, startGateway, waitFor, within } = require("./helpers");

const CLIENTS = 2000;
const ROOMS = 50;

test("two thousand clients connecting at once get every ack", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());

  const sockets = [];
  t.after(() => sockets.forEach((s) => s.close()));
  const replies = [];
  for (let i = 0; i < CLIENTS; i++) {
    const socket = io(gateway.url, { transports: ["websocket"], reconnection: false, forceNew: true });
    sockets.push(socket);
    replies.push(
      new Promise((resolve, reject) => {
        socket.on("connect_error", reject);
        socket.on("connect", () => {
          const room = `room-${i % ROOMS}`;
          const joined = new Promise((done) => socket.emit("join", { room }, done));
          const published = new Promise((done) => socket.emit("publish", { room, event: "hello", data: i }, done));
          Promise.all([joined, published]).then(resolve);
        });
      }),
    );
  }

  const all = await within("every join and publish ack", Promise.all(replies), 30000);
  assert.equal(all.length, CLIENTS);
  for (const [joined, published] of all) {
    assert.deepEqual(joined, { ok: true });
    assert.deepEqual(published, { ok: true });
  }
  assert.equal(await metric(gateway, "socket_io_connected"), CLIENTS);

  sockets.forEach((s) => s.close());
  await waitFor("socket_io_connected to return to 0", async () => (await metric(gateway, "socket_io_connected")) === 0);
  await waitFor("open connections to return to 0", async () => (await metric(gateway, "socketfleet_open_connections")) === 0);
});
