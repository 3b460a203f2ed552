// Many publishes in flight on one socket: every ack arrives and every member gets each event once.
// Several packets then arrive in one TCP read, which the gateway's frame inspector must pass on
// intact whatever the size of the buffer it is handed.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, request, startGateway, waitFor } = require("./helpers");

const PUBLISHES = 500;
const IN_FLIGHT = 16;

test("publishes in flight all get acks and deliveries", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());
  const members = [];
  for (let i = 0; i < 3; i++) {
    members.push(await connect(gateway.url));
  }
  t.after(() => members.forEach((s) => s.close()));

  const seen = members.map(() => new Map());
  members.forEach((socket, index) => {
    socket.on("burst", (data) => seen[index].set(data.n, (seen[index].get(data.n) ?? 0) + 1));
  });
  for (const socket of members) {
    assert.deepEqual(await request(socket, "join", { room: "burst" }), { ok: true });
  }

  // Payloads of 0 to 199 extra bytes, so frame headers fall at varied offsets within a read.
  const acks = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < PUBLISHES) {
        const n = next++;
        const data = { n, pad: "x".repeat(n % 200) };
        acks.push(await request(members[0], "publish", { room: "burst", event: "burst", data }));
      }
    }),
  );

  assert.equal(acks.length, PUBLISHES);
  assert.deepEqual(acks.filter((ack) => !ack.ok), []);
  await waitFor("every member to receive every publish", () =>
    seen.every((counts) => counts.size === PUBLISHES),
  );
  for (const counts of seen) {
    assert.deepEqual([...counts.values()].filter((count) => count !== 1), []);
  }
});
