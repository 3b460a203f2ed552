// The publish API reaches one socket through its private room, named after its socket id, while
// clients still cannot join that room.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, nextEvent, request, startGateway } = require("./helpers");

const TOKEN = "test-publish-token";

function publish(gateway, body) {
  return fetch(`${gateway.adminUrl}/api/v1/publish`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(body),
  });
}

test("publish to a socket id reaches only that socket", async (t) => {
  const gateway = await startGateway([], { SOCKETFLEET_PUBLISH_TOKEN: TOKEN });
  t.after(() => gateway.stop());
  const target = await connect(gateway.url);
  const other = await connect(gateway.url);
  t.after(() => [target, other].forEach((s) => s.close()));

  let otherReceived = 0;
  other.on("direct", () => otherReceived++);
  const received = nextEvent(target, "direct");
  const res = await publish(gateway, { room: target.id, event: "direct", data: { n: 1 } });
  assert.equal(res.status, 202, await res.clone().text());
  assert.deepEqual(await received, [{ n: 1 }]);

  // A round trip on the other socket after the delivery: had it been sent "direct", it would
  // have arrived before this ack.
  await request(other, "join", { room: "sync" });
  assert.equal(otherReceived, 0);

  const ack = await request(other, "join", { room: target.id });
  assert.match(ack.error, /socket id/);
});
