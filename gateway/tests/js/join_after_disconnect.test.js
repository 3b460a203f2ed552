// Join after disconnect: a client sends `join` and drops its TCP connection at once, so the
// disconnect races the join. Scaled down from 10,000 iterations to 500. Afterwards no room entry
// is left on the pod.
// NOTE: the field case's join handler awaits 200 ms (an auth lookup) before joining. The gateway's
// join awaits only the adapter, so the race window here is narrower than in that case.
"use strict";

const net = require("node:net");
const test = require("node:test");
const assert = require("node:assert/strict");
const { metric, rawSocket, startGateway, waitFor } = require("./helpers");

const ITERATIONS = 500;

test("no room entry outlives a socket that vanished during join", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());

  for (let i = 0; i < ITERATIONS; i++) {
    const raw = await rawSocket(gateway);
    raw.ws.send("40");
    await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
    raw.ws.send(`420["join",{"room":"r${i % 7}"}]`);
    // Drop TCP with no close frame, right after the join left the client.
    const socket = raw.ws._socket;
    assert.ok(socket instanceof net.Socket);
    socket.destroy();
  }

  await waitFor("socket_io_connected to return to 0", async () => (await metric(gateway, "socket_io_connected")) === 0);
  await waitFor("local rooms to return to 0", async () => (await metric(gateway, "socketfleet_local_rooms")) === 0);
});
