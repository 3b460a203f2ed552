// Drain on SIGTERM with 200 clients of three kinds (socket.io-client over websocket, raw
// websockets, socket.io-client over long-polling) and a 3 s window: /readyz turns false at once,
// websocket and polling handshakes get 503, websockets are closed with 1001 (going away) in
// batches, socket.io-client reconnects, and the process exits before the window and its 2 s grace.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, rawSocket, rawUpgrade, startGateway, waitFor, within } = require("./helpers");

const DRAIN_SECONDS = 3;
const GRACE_SECONDS = 2;

/** Opens a long-polling session connected to the main namespace; returns its URL. */
async function pollingSession(gateway) {
  const handshake = await (await fetch(`${gateway.url}/socket.io/?EIO=4&transport=polling`)).text();
  const { sid } = JSON.parse(handshake.slice(1));
  const url = `${gateway.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
  assert.equal((await fetch(url, { method: "POST", body: "40" })).status, 200);
  assert.match(await (await fetch(url)).text(), /^40\{/);
  return url;
}

test("a drain closes 200 websocket and polling clients in batches", async (t) => {
  const gateway = await startGateway([
    "--drain-seconds",
    String(DRAIN_SECONDS),
    "--transport",
    "websocket",
    "--transport",
    "polling",
  ]);
  t.after(() => gateway.stop());

  const reconnecting = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 };
  const sockets = [];
  for (let i = 0; i < 170; i++) sockets.push(await connect(gateway.url, reconnecting));
  const pollers = [];
  for (let i = 0; i < 10; i++) pollers.push(await connect(gateway.url, { transports: ["polling"], upgrade: false }));
  const raws = [];
  for (let i = 0; i < 20; i++) {
    const raw = await rawSocket(gateway);
    raw.ws.send("40");
    await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
    raws.push(raw);
  }
  t.after(() => [...sockets, ...pollers].forEach((s) => s.close()));
  t.after(() => raws.forEach((raw) => raw.ws.terminate()));
  const clients = sockets.length + pollers.length + raws.length;

  // A waiting poll of a raw long-polling session, sent before the drain starts.
  const pollUrl = await pollingSession(gateway);
  const waitingPoll = fetch(pollUrl)
    .then(async (res) => ({ status: res.status, body: await res.text() }))
    .catch((err) => ({ error: String(err.cause ? err.cause.code : err.message) }));

  // How many clients were still connected right after each disconnect.
  const stillConnected = [];
  const connectedNow = () =>
    [...sockets, ...pollers].filter((s) => s.connected).length + raws.filter((r) => r.ws.readyState === 1).length;
  const socketReasons = [];
  const pollerReasons = [];
  let reconnectAttempts = 0;
  const gone = [
    ...sockets.map(
      (socket) =>
        new Promise((resolve) =>
          socket.once("disconnect", (reason) => {
            socketReasons.push(reason);
            stillConnected.push(connectedNow());
            resolve();
          }),
        ),
    ),
    ...pollers.map(
      (socket) =>
        new Promise((resolve) =>
          socket.once("disconnect", (reason) => {
            pollerReasons.push(reason);
            stillConnected.push(connectedNow());
            resolve();
          }),
        ),
    ),
    ...raws.map((raw) => raw.closed.then(() => stillConnected.push(connectedNow()))),
  ];
  sockets.forEach((s) => s.io.on("reconnect_attempt", () => reconnectAttempts++));

  const sigterm = Date.now();
  gateway.child.kill("SIGTERM");

  await t.test("readiness turns false before most clients are dropped", async () => {
    await waitFor("readyz 503", async () => (await fetch(`${gateway.adminUrl}/readyz`)).status === 503, 2000, 5);
    assert.ok(stillConnected.length < clients / 2, `${stillConnected.length} clients were gone already`);
  });

  await t.test("websocket and polling handshakes are refused with 503", async () => {
    const upgrade = await rawUpgrade(gateway);
    assert.equal(upgrade.status, 503);
    assert.equal(JSON.parse(upgrade.body).reason, "draining");
    const handshake = await fetch(`${gateway.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(handshake.status, 503);
    assert.equal((await handshake.json()).reason, "draining");
  });

  await t.test("every client is dropped, in batches, websockets with 1001", async () => {
    await within("every client to be dropped", Promise.all(gone), (DRAIN_SECONDS + GRACE_SECONDS) * 1000);
    assert.ok(stillConnected[0] >= clients / 2, `after the first drop ${stillConnected[0]} were connected`);
    for (const raw of raws) assert.equal((await raw.closed).code, 1001);
    assert.deepEqual(new Set(socketReasons), new Set(["transport close"]));
    assert.equal(pollerReasons.length, pollers.length);
  });

  await t.test("socket.io-client tries to reconnect", async () => {
    await waitFor("a reconnect attempt", () => reconnectAttempts > 0, 5000);
  });

  await t.test("the process exits with status 0 before the window and its grace are over", async () => {
    const left = (DRAIN_SECONDS + GRACE_SECONDS) * 1000 - (Date.now() - sigterm);
    const { code } = await within("gateway exit", gateway.exited, Math.max(left, 0) + 500);
    assert.equal(code, 0, gateway.log());
  });

  await t.test("a waiting poll is answered with a close packet", async () => {
    assert.deepEqual(await within("the waiting poll's answer", waitingPoll, 2000), { status: 200, body: "1" });
  });
});
