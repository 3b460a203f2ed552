// The publish API on the admin port: off without a token, authenticated, validated, delivered.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, nextEvent, request, startGateway } = require("./helpers");

function publish(gateway, body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(`${gateway.adminUrl}/api/v1/publish`, {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

test("publish API answers 403 when no token is configured", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());
  const res = await publish(gateway, { event: "e", data: 1 }, "anything");
  assert.equal(res.status, 403);
  assert.match((await res.json()).error, /publish API is off/);
});

test("publish API", async (t) => {
  const token = "test-publish-token";
  const gateway = await startGateway(["--namespace", "/", "--namespace", "/calls"], {
    SOCKETFLEET_PUBLISH_TOKEN: token,
  });
  t.after(() => gateway.stop());
  const member = await connect(gateway.url);
  const outsider = await connect(gateway.url);
  const calls = await connect(`${gateway.url}/calls`);
  t.after(() => [member, outsider, calls].forEach((s) => s.close()));
  await request(member, "join", { room: "r1" });

  await t.test("rejects missing and wrong tokens with 401", async () => {
    assert.equal((await publish(gateway, { event: "e" })).status, 401);
    assert.equal((await publish(gateway, { event: "e" }, "wrong")).status, 401);
  });

  await t.test("rejects bad input with 4xx and a message", async () => {
    const cases = [
      ["{not json", 400, /invalid JSON/],
      [{ data: 1 }, 400, /event/],
      [{ event: "", data: 1 }, 400, /empty/],
      [{ event: "e", room: "" }, 400, /room/],
      [{ event: "e", extra: true }, 400, /unknown field/],
      [{ event: "e", namespace: "/nope" }, 404, /not served/],
    ];
    for (const [body, status, pattern] of cases) {
      const res = await publish(gateway, body, token);
      assert.equal(res.status, status, `body ${JSON.stringify(body)}`);
      assert.match((await res.json()).error, pattern);
    }
  });

  await t.test("delivers to a room", async () => {
    const received = nextEvent(member, "news");
    let outsiderGotIt = false;
    outsider.on("news", () => (outsiderGotIt = true));
    const res = await publish(gateway, { room: "r1", event: "news", data: { n: 1 } }, token);
    assert.equal(res.status, 202);
    assert.deepEqual(await received, [{ n: 1 }]);
    await request(outsider, "join", { room: "sync" });
    assert.equal(outsiderGotIt, false);
  });

  await t.test("delivers to a whole namespace", async () => {
    const first = nextEvent(member, "all");
    const second = nextEvent(outsider, "all");
    const res = await publish(gateway, { event: "all", data: "x" }, token);
    assert.equal(res.status, 202);
    await first;
    await second;
  });

  await t.test("delivers to another namespace", async () => {
    const received = nextEvent(calls, "ring");
    const res = await publish(gateway, { namespace: "/calls", event: "ring", data: 7 }, token);
    assert.equal(res.status, 202);
    assert.deepEqual(await received, [7]);
  });
});
