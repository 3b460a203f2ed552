// JWT auth: tokens are verified at connect and their claims decide joinable and publishable rooms.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, metric, nextEvent, request, signToken, startGateway, tempFile } = require("./helpers");

const SECRET = "integration-test-secret";
const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

test("auth", async (t) => {
  // The key file ends with a newline, as a mounted Secret often does.
  const keyFile = tempFile("jwt.key", SECRET + "\n");
  const gateway = await startGateway(["--auth-key-file", keyFile]);
  t.after(() => gateway.stop());

  await t.test("rejects a socket without a token with a reason", async () => {
    await assert.rejects(connect(gateway.url), (err) => /missing token/.test(err.message));
  });

  await t.test("rejects a token signed with another key", async () => {
    const token = signToken("other-key", { sub: "u1", exp: inAnHour() });
    await assert.rejects(connect(gateway.url, { auth: { token } }), (err) => /invalid token/.test(err.message));
  });

  await t.test("rejects an expired token", async () => {
    const token = signToken(SECRET, { sub: "u1", exp: 1000 });
    await assert.rejects(connect(gateway.url, { auth: { token } }), (err) => /invalid token/.test(err.message));
  });

  await t.test("counts rejected sockets", async () => {
    assert.ok((await metric(gateway, 'socketfleet_rejected_connections_total{reason="unauthorized"}')) >= 3);
  });

  await t.test("claims decide rooms", async (st) => {
    const token = signToken(SECRET, { sub: "u1", exp: inAnHour(), rooms: ["news", "chat"], publish: ["chat"] });
    const socket = await connect(gateway.url, { auth: { token } });
    st.after(() => socket.close());

    assert.deepEqual(await request(socket, "join", { room: "chat" }), { ok: true });
    assert.match((await request(socket, "join", { room: "admin" })).error, /not allowed to join/);

    const received = nextEvent(socket, "msg");
    assert.deepEqual(await request(socket, "publish", { room: "chat", event: "msg", data: 1 }), { ok: true });
    await received;
    assert.match((await request(socket, "publish", { room: "news", event: "msg", data: 1 })).error, /not allowed to publish/);
  });

  await t.test("a wildcard grants every room", async (st) => {
    const token = signToken(SECRET, { sub: "u2", exp: inAnHour(), rooms: ["*"], publish: ["*"] });
    const socket = await connect(gateway.url, { auth: { token } });
    st.after(() => socket.close());
    assert.deepEqual(await request(socket, "join", { room: "anything" }), { ok: true });
    assert.deepEqual(await request(socket, "publish", { room: "anything", event: "e", data: 0 }), { ok: true });
  });
});
