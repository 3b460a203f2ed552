// Per-user connection limit through the gateway, counted in a real redis-server (standalone).
"use strict";

const { spawn } = require("node:child_process");
const net = require("node:net");
const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, freePort, metric, signToken, startGateway, tempFile, waitFor } = require("./helpers");

const SECRET = "per-user-limit-secret";
const token = (sub) => signToken(SECRET, { sub, exp: Math.floor(Date.now() / 1000) + 3600, rooms: ["*"] });

async function startRedis() {
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  await waitFor(`redis-server on port ${port}`, () =>
    new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    }),
  );
  return { port, stop: () => child.kill("SIGKILL") };
}

test("per-user limit", async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const gateway = await startGateway([
    "--redis-url",
    `redis://127.0.0.1:${redis.port}`,
    "--redis-mode",
    "standalone",
    "--auth-key-file",
    tempFile("jwt.key", SECRET),
    "--max-connections-per-user",
    "2",
  ]);
  t.after(() => gateway.stop());

  const first = await connect(gateway.url, { auth: { token: token("alice") } });
  const second = await connect(gateway.url, { auth: { token: token("alice") } });
  t.after(() => [first, second].forEach((s) => s.close()));

  await t.test("a third socket of the same user is rejected with a reason", async () => {
    await assert.rejects(connect(gateway.url, { auth: { token: token("alice") } }), (err) =>
      /reached the limit of 2 connections/.test(err.message),
    );
    assert.equal(await metric(gateway, 'socketfleet_rejected_connections_total{reason="user_limit"}'), 1);
  });

  await t.test("another user is counted apart", async () => {
    const bob = await connect(gateway.url, { auth: { token: token("bob") } });
    bob.close();
  });

  await t.test("a disconnect frees a slot", async () => {
    first.close();
    await waitFor("alice to get a slot back", async () => {
      try {
        const again = await connect(gateway.url, { auth: { token: token("alice") } });
        again.close();
        return true;
      } catch {
        return false;
      }
    });
  });
});
