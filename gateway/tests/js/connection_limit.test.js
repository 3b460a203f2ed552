// Per-pod connection limit: refused before the upgrade with 503, readiness with a low-water mark.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, metric, rawUpgrade, startGateway, waitFor } = require("./helpers");

async function readyStatus(gateway) {
  return (await fetch(`${gateway.adminUrl}/readyz`)).status;
}

test("connection limit", async (t) => {
  // Full at 4 connections, ready again below 2 (50 %).
  const gateway = await startGateway(["--max-connections", "4", "--ready-below-percent", "50"]);
  t.after(() => gateway.stop());

  const sockets = [];
  for (let i = 0; i < 4; i++) sockets.push(await connect(gateway.url));
  t.after(() => sockets.forEach((s) => s.close()));

  await t.test("readiness turns false at the limit", async () => {
    assert.equal(await readyStatus(gateway), 503);
    const body = await (await fetch(`${gateway.adminUrl}/readyz`)).json();
    assert.match(body.reasons.join(";"), /at capacity/);
  });

  await t.test("a new connection gets 503 with a reason and Retry-After before the upgrade", async () => {
    const answer = await rawUpgrade(gateway);
    assert.equal(answer.status, 503);
    assert.ok(Number(answer.headers["retry-after"]) > 0, "Retry-After header");
    const body = JSON.parse(answer.body);
    assert.equal(body.reason, "at_capacity");
    assert.match(body.error, /connection limit/);
  });

  await t.test("socket.io-client sees a connect error", async () => {
    await assert.rejects(connect(gateway.url));
    assert.ok((await metric(gateway, 'socketfleet_rejected_connections_total{reason="at_capacity"}')) >= 2);
  });

  await t.test("readiness stays false until below the low-water mark", async () => {
    sockets.pop().close();
    sockets.pop().close();
    // 2 open: below the limit but not below the mark.
    await waitFor("open connections to reach 2", async () => (await metric(gateway, "socketfleet_open_connections")) === 2);
    assert.equal(await readyStatus(gateway), 503);

    sockets.pop().close();
    await waitFor("readiness after falling below the mark", async () => (await readyStatus(gateway)) === 200);
  });

  await t.test("connections are admitted again", async () => {
    sockets.push(await connect(gateway.url));
  });
});
