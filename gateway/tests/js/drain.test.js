// Drain on SIGTERM: not ready at once, new clients refused, disconnects spread over the window.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, rawUpgrade, startGateway, waitFor, within } = require("./helpers");

test("drain on SIGTERM", async (t) => {
  const clients = 20;
  const gateway = await startGateway(["--drain-seconds", "2"]);
  t.after(() => gateway.stop());

  const sockets = [];
  for (let i = 0; i < clients; i++) sockets.push(await connect(gateway.url));
  t.after(() => sockets.forEach((s) => s.close()));

  // For each disconnect, how many sockets were still connected right after it.
  const stillConnected = [];
  const reasons = [];
  const allGone = Promise.all(
    sockets.map(
      (socket) =>
        new Promise((resolve) =>
          socket.on("disconnect", (reason) => {
            reasons.push(reason);
            stillConnected.push(sockets.filter((s) => s.connected).length);
            resolve();
          }),
        ),
    ),
  );

  gateway.child.kill("SIGTERM");

  await t.test("readiness turns false before any socket is dropped", async () => {
    await waitFor("readyz 503", async () => (await fetch(`${gateway.adminUrl}/readyz`)).status === 503, 2000, 5);
    assert.ok(stillConnected.length < clients, "all sockets were gone before readiness turned false");
  });

  await t.test("new connections are refused with 503 while draining", async () => {
    const answer = await rawUpgrade(gateway);
    assert.equal(answer.status, 503);
    assert.equal(JSON.parse(answer.body).reason, "draining");
  });

  await t.test("disconnects are spread, and clients see a transport close they reconnect from", async () => {
    await within("every socket to be disconnected", allGone, 10000);
    // Spread: when the first socket went, most others were still connected.
    assert.ok(stillConnected[0] >= clients / 2, `after the first disconnect ${stillConnected[0]} were connected`);
    for (const reason of reasons) assert.equal(reason, "transport close");
  });

  await t.test("the process exits on its own with status 0", async () => {
    const { code } = await within("gateway exit", gateway.exited, 10000);
    assert.equal(code, 0, gateway.log());
  });
});
