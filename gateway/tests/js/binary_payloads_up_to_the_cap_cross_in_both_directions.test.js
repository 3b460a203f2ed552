// Binary payloads near --max-payload-bytes (200,000 here) with the npm socket.io-client: a
// publish carrying a Buffer of exactly the cap reaches a websocket member and a long-polling
// member intact, one byte more closes the sender's connection as payload_too_large, and the
// gateway keeps serving. Also: a client's ack timeout on an event the gateway does not answer, and
// a volatile emit while connected.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, metric, nextEvent, request, startGateway, within } = require("./helpers");

const CAP = 200000;

test("binary payloads up to the cap cross in both directions", async (t) => {
  const gateway = await startGateway([
    "--max-payload-bytes",
    String(CAP),
    "--transport",
    "websocket",
    "--transport",
    "polling",
  ]);
  t.after(() => gateway.stop());

  const sender = await connect(gateway.url);
  const wsMember = await connect(gateway.url);
  const pollingMember = await connect(gateway.url, { transports: ["polling"], upgrade: false });
  t.after(() => [sender, wsMember, pollingMember].forEach((s) => s.close()));
  for (const socket of [sender, wsMember, pollingMember]) {
    assert.deepEqual(await request(socket, "join", { room: "big" }), { ok: true });
  }

  await t.test("a Buffer of exactly the cap reaches websocket and polling members intact", async () => {
    const payload = Buffer.alloc(CAP);
    for (let i = 0; i < CAP; i++) payload[i] = i % 251;
    const atWebsocket = nextEvent(wsMember, "blob", 10000);
    const atPolling = nextEvent(pollingMember, "blob", 10000);
    assert.deepEqual(await request(sender, "publish", { room: "big", event: "blob", data: payload }), { ok: true });
    const [[wsData], [pollingData]] = await Promise.all([atWebsocket, atPolling]);
    assert.ok(payload.equals(Buffer.from(wsData)), "websocket member got other bytes");
    assert.ok(payload.equals(Buffer.from(pollingData)), "polling member got other bytes");
  });

  await t.test("one byte over the cap closes the sender as payload_too_large", async () => {
    const disconnected = nextEvent(sender, "disconnect", 5000);
    sender.emit("publish", { room: "big", event: "blob", data: Buffer.alloc(CAP + 1) });
    await disconnected;
    assert.equal(await metric(gateway, 'socket_io_disconnect_total{reason="payload_too_large"}'), 1);
  });

  await t.test("an event the gateway does not answer times out on the client", async () => {
    const outcome = await within(
      "the client's ack timeout",
      new Promise((resolve) => wsMember.timeout(300).emit("no-such-event", {}, (err) => resolve(err))),
    );
    assert.match(String(outcome && outcome.message), /timed out/);
    assert.deepEqual(await request(wsMember, "join", { room: "after-timeout" }), { ok: true });
  });

  await t.test("a volatile publish from a connected client is delivered", async () => {
    const received = nextEvent(wsMember, "light");
    wsMember.volatile.emit("publish", { room: "big", event: "light", data: 1 });
    assert.deepEqual(await received, [1]);
  });
});
