// socketfleet_local_rooms counts the rooms with members on this pod, private rooms included:
// two sockets, one in rooms a and b and one in room a, make 4 (a, b and two private rooms), and
// the gauge returns to 0 once both are gone.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, metric, request, startGateway, waitFor } = require("./helpers");

test("the local rooms gauge counts rooms with members", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());

  const first = await connect(gateway.url);
  const second = await connect(gateway.url);
  t.after(() => [first, second].forEach((s) => s.close()));
  assert.deepEqual(await request(first, "join", { room: "a" }), { ok: true });
  assert.deepEqual(await request(first, "join", { room: "b" }), { ok: true });
  assert.deepEqual(await request(second, "join", { room: "a" }), { ok: true });
  assert.equal(await metric(gateway, "socketfleet_local_rooms"), 4);

  assert.deepEqual(await request(first, "leave", { room: "b" }), { ok: true });
  assert.equal(await metric(gateway, "socketfleet_local_rooms"), 3);

  first.close();
  second.close();
  await waitFor("socket_io_connected to return to 0", async () => (await metric(gateway, "socket_io_connected")) === 0);
  assert.equal(await metric(gateway, "socketfleet_local_rooms"), 0);
});
