// Heartbeats, scaled down from 1,000 clients for 10 minutes at 25 s / 20 s to 200 clients for
// 3 s at 500 ms / 500 ms: six ping rounds with every client idle and none dropped. A client that
// sends no pong is dropped with reason ping_timeout and leaves its rooms.
//
// SOCKETFLEET_SOAK=1 (`make soak`) runs the field case at full scale: 1,000 idle clients for 10
// minutes at 25 s / 20 s with no disconnect, and the silent client dropped within interval +
// timeout +/- 1 s of its open packet.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { SOAK, connect, metric, rawSocket, request, startGateway, waitFor, within } = require("./helpers");

const PING_INTERVAL_MS = SOAK ? 25000 : 500;
const PING_TIMEOUT_MS = SOAK ? 20000 : 500;
const CLIENTS = SOAK ? 1000 : 200;
const IDLE_MS = SOAK ? 10 * 60 * 1000 : 6 * PING_INTERVAL_MS;
// At full scale the field case bounds the drop time: interval + timeout, plus or minus this.
const DROP_TOLERANCE_MS = 1000;

test("heartbeats", async (t) => {
  const gateway = await startGateway([
    "--ping-interval",
    `${PING_INTERVAL_MS}ms`,
    "--ping-timeout",
    `${PING_TIMEOUT_MS}ms`,
  ]);
  t.after(() => gateway.stop());

  await t.test("idle clients that answer pings stay connected", async (st) => {
    const sockets = [];
    for (let i = 0; i < CLIENTS; i++) sockets.push(await connect(gateway.url));
    st.after(() => sockets.forEach((s) => s.close()));
    let disconnects = 0;
    sockets.forEach((s) => s.on("disconnect", () => disconnects++));
    await new Promise((r) => setTimeout(r, IDLE_MS));
    if (SOAK) {
      const connected = await metric(gateway, "socket_io_connected");
      st.diagnostic(`G5: ${CLIENTS} idle clients for ${IDLE_MS} ms: ${disconnects} disconnects, ${connected} connected`);
      assert.equal(connected, CLIENTS);
    }
    assert.equal(disconnects, 0);
    assert.equal(await metric(gateway, 'socket_io_disconnect_total{reason="ping_timeout"}'), 0);
  });

  await t.test("a client that never answers pings is dropped and leaves its rooms", async (st) => {
    // The raw client sends no pongs, so the server's pings time out.
    const raw = await rawSocket(gateway);
    const opened = Date.now();
    raw.ws.send("40");
    await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
    raw.ws.send('420["join",{"room":"silent"}]');
    await raw.waitForMessage("join ack", (m) => m.startsWith("430"));

    await within("the server to close the silent client", raw.closed, 4 * (PING_INTERVAL_MS + PING_TIMEOUT_MS));
    if (SOAK) {
      const dropMs = Date.now() - opened;
      const expectedMs = PING_INTERVAL_MS + PING_TIMEOUT_MS;
      st.diagnostic(`G5: the silent client was dropped ${dropMs} ms after its open packet (expected ${expectedMs} ms)`);
      assert.ok(Math.abs(dropMs - expectedMs) <= DROP_TOLERANCE_MS, `dropped after ${dropMs} ms, expected ${expectedMs} +/- ${DROP_TOLERANCE_MS} ms`);
    }
    await waitFor("the ping_timeout disconnect to be counted", async () =>
      (await metric(gateway, 'socket_io_disconnect_total{reason="ping_timeout"}')) === 1,
    );

    // Afterwards the room has one member left, so a publish reaches exactly one socket.
    const member = await connect(gateway.url);
    await request(member, "join", { room: "silent" });
    let received = 0;
    member.on("echo", () => received++);
    await request(member, "publish", { room: "silent", event: "echo", data: 1 });
    await waitFor("the echo", () => received === 1);
    member.close();
  });
});
