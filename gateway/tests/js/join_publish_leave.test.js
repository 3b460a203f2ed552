// Client events: join, publish and leave with their acks, as an application uses them.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, nextEvent, request, startGateway, within } = require("./helpers");

test("client events", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());
  const alice = await connect(gateway.url);
  const bob = await connect(gateway.url);
  const carol = await connect(gateway.url);
  t.after(() => [alice, bob, carol].forEach((s) => s.close()));

  await t.test("join acks ok", async () => {
    assert.deepEqual(await request(alice, "join", { room: "lobby" }), { ok: true });
    assert.deepEqual(await request(bob, "join", { room: "lobby" }), { ok: true });
  });

  await t.test("publish reaches room members only", async () => {
    let carolGotIt = false;
    carol.on("chat", () => (carolGotIt = true));
    const bobReceives = nextEvent(bob, "chat");
    const aliceReceives = nextEvent(alice, "chat");
    const ack = await request(alice, "publish", { room: "lobby", event: "chat", data: { text: "hi" } });
    assert.deepEqual(ack, { ok: true });
    assert.deepEqual(await bobReceives, [{ text: "hi" }]);
    assert.deepEqual(await aliceReceives, [{ text: "hi" }]);
    // A round trip after the publish proves carol's connection has delivered what it would.
    await request(carol, "join", { room: "elsewhere" });
    assert.equal(carolGotIt, false);
  });

  await t.test("leave stops delivery", async () => {
    assert.deepEqual(await request(bob, "leave", { room: "lobby" }), { ok: true });
    let bobGotIt = false;
    bob.on("after-leave", () => (bobGotIt = true));
    const aliceReceives = nextEvent(alice, "after-leave");
    await request(alice, "publish", { room: "lobby", event: "after-leave", data: 1 });
    await aliceReceives;
    await request(bob, "join", { room: "ping" });
    assert.equal(bobGotIt, false);
  });

  await t.test("invalid payloads get error acks", async () => {
    const cases = [
      ["join", { nope: 1 }, /invalid payload/],
      ["join", { room: "" }, /empty/],
      ["join", { room: alice.id }, /socket id/],
      ["leave", "lobby", /invalid payload/],
      ["publish", { room: "lobby", event: "disconnect", data: 1 }, /reserved/],
      ["publish", { room: "lobby" }, /invalid payload/],
    ];
    for (const [event, payload, pattern] of cases) {
      const ack = await request(alice, event, payload);
      assert.match(ack.error ?? "", pattern, `${event} ${JSON.stringify(payload)} answered ${JSON.stringify(ack)}`);
    }
  });

  await t.test("events without an ack are handled", async () => {
    const received = nextEvent(bob, "quiet");
    await request(bob, "join", { room: "quiet-room" });
    alice.emit("publish", { room: "quiet-room", event: "quiet", data: "x" });
    assert.deepEqual(await within("publish without ack", received), ["x"]);
  });
});
