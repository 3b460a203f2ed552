// Socket.IO keeps the order of one client's events and of the server's emits to a client. So
// publishes from one client reach a room member in the order they were emitted, and a publish
// emitted right after a join (without waiting for its ack) reaches the publisher.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, nextEvent, request, startGateway, waitFor, within } = require("./helpers");

test("events from one client are handled in order", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());

  await t.test("publishes reach a member in the order they were emitted", async (st) => {
    const sender = await connect(gateway.url);
    const member = await connect(gateway.url);
    st.after(() => [sender, member].forEach((s) => s.close()));
    await request(member, "join", { room: "ordered" });
    const received = [];
    member.on("n", (n) => received.push(n));
    const count = 500;
    for (let i = 0; i < count; i++) sender.emit("publish", { room: "ordered", event: "n", data: i });
    await waitFor(`${count} publishes at the member`, () => received.length >= count);
    const firstOutOfOrder = received.findIndex((n, i) => n !== i);
    assert.equal(firstOutOfOrder, -1, `out of order from index ${firstOutOfOrder}: ${received.slice(firstOutOfOrder, firstOutOfOrder + 5)}`);
  });

  await t.test("a publish emitted right after a join reaches the publisher", async () => {
    for (let round = 0; round < 50; round++) {
      const socket = await connect(gateway.url);
      try {
        const room = `join-then-publish-${round}`;
        const received = nextEvent(socket, "self");
        socket.emit("join", { room });
        const ack = socket.emitWithAck("publish", { room, event: "self", data: round });
        assert.deepEqual(await within("publish ack", ack), { ok: true });
        assert.deepEqual(await received, [round], `round ${round}`);
      } finally {
        socket.close();
      }
    }
  });
});
