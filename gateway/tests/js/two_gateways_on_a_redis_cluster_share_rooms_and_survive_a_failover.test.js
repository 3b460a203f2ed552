// Two gateway processes on a real Redis Cluster (3 masters, 3 replicas, started by
// e2e/scripts/redis-cluster.sh): a room publish from a client on pod A reaches members on A and B
// exactly once, the publish API on A reaches a socket on B through its private room, leaving and
// disconnecting bring the shard channels back to their baseline, and after the master that
// serves the room's channel is killed with SIGKILL, both pods become ready again and deliver.
"use strict";

const { execFileSync, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, nextEvent, request, startGateway, waitFor } = require("./helpers");

const SCRIPT = path.join(__dirname, "../../../e2e/scripts/redis-cluster.sh");
const TOKEN = "cluster-publish-token";

/** Resolves whether nothing listens on 127.0.0.1:`port`. */
function portFree(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** Starts a cluster on the first block of 6 free ports (and bus ports +10000) from 7700. */
async function startCluster(t) {
  for (let base = 7700; base < 7760; base += 10) {
    const ports = [0, 1, 2, 3, 4, 5].flatMap((i) => [base + i, base + i + 10000]);
    if (!(await Promise.all(ports.map(portFree))).every(Boolean)) continue;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "socketfleet-cluster-"));
    const args = ["start", "--port", String(base), "--dir", dir, "--owner-pid", String(process.pid)];
    // A replica takes over about one node timeout after its master dies.
    args.push("--node-timeout", "1000");
    execFileSync("bash", [SCRIPT, ...args], { stdio: ["ignore", "ignore", "inherit"] });
    t.after(() => execFileSync("bash", [SCRIPT, "stop", "--port", String(base), "--dir", dir]));
    return { base, dir };
  }
  throw new Error("no free block of ports for a redis cluster in 7700..7760");
}

function redisCli(port, ...args) {
  return spawnSync("redis-cli", ["-p", String(port), ...args], { timeout: 5000 }).stdout.toString().trim();
}

/** Shard channels of the whole cluster, each with the port of the node that lists it. */
function shardChannels(cluster) {
  const channels = new Map();
  for (let i = 0; i < 6; i++) {
    const port = cluster.base + i;
    for (const channel of redisCli(port, "pubsub", "shardchannels").split("\n").filter(Boolean)) {
      channels.set(channel, port);
    }
  }
  return channels;
}

async function ready(gateway) {
  return (await fetch(`${gateway.adminUrl}/readyz`)).status === 200;
}

/** Publishes `event` from `socket` to `room` and resolves with what each member received. */
async function publishAndCollect(socket, room, event, members) {
  const received = members.map((member) => nextEvent(member, event, 10000));
  assert.deepEqual(await request(socket, "publish", { room, event, data: event }, 10000), { ok: true });
  return Promise.all(received);
}

test("two gateways on a redis cluster share rooms and survive a failover", async (t) => {
  const cluster = await startCluster(t);
  const flags = ["--redis-url", `redis://127.0.0.1:${cluster.base}`, "--redis-mode", "cluster"];
  const podA = await startGateway(flags, { SOCKETFLEET_PUBLISH_TOKEN: TOKEN });
  t.after(() => podA.stop());
  const podB = await startGateway(flags, { SOCKETFLEET_PUBLISH_TOKEN: TOKEN });
  t.after(() => podB.stop());
  const baseline = [...shardChannels(cluster).keys()].sort();

  const onA = await connect(podA.url);
  const onB = await connect(podB.url);
  const outsider = await connect(podB.url);
  t.after(() => [onA, onB, outsider].forEach((s) => s.close()));
  for (const socket of [onA, onB]) assert.deepEqual(await request(socket, "join", { room: "lobby" }), { ok: true });

  await t.test("a room publish from pod A reaches members on A and B exactly once", async () => {
    const counts = new Map([onA, onB, outsider].map((s) => [s, 0]));
    for (const socket of counts.keys()) socket.on("chat", () => counts.set(socket, counts.get(socket) + 1));
    await publishAndCollect(onA, "lobby", "chat", [onA, onB]);
    // The room's events arrive in order, so once the marker is in, a duplicate chat would be too.
    await publishAndCollect(onA, "lobby", "marker", [onA, onB]);
    assert.deepEqual([...counts.values()], [1, 1, 0]);
  });

  await t.test("the publish API on pod A reaches a socket on pod B by its id", async () => {
    const received = nextEvent(onB, "direct", 10000);
    const res = await fetch(`${podA.adminUrl}/api/v1/publish`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ room: onB.id, event: "direct", data: { n: 1 } }),
    });
    assert.equal(res.status, 202, await res.clone().text());
    assert.deepEqual(await received, [{ n: 1 }]);
  });

  await t.test("leaving and disconnecting bring the shard channels back to the baseline", async () => {
    const extra = await connect(podA.url);
    assert.deepEqual(await request(extra, "join", { room: "short-lived" }), { ok: true });
    assert.ok(shardChannels(cluster).has("socketfleet:room:%2F:short-lived"));
    assert.deepEqual(await request(extra, "leave", { room: "short-lived" }), { ok: true });
    await waitFor("the left room's channel to go", () => !shardChannels(cluster).has("socketfleet:room:%2F:short-lived"));
    extra.close();
    outsider.close();
    // Left: onA and onB with their private rooms and lobby.
    const expected = [...baseline, `socketfleet:room:%2F:${onA.id}`, `socketfleet:room:%2F:${onB.id}`, "socketfleet:room:%2F:lobby"];
    await waitFor("the shard channels to return to the baseline", () => {
      const now = [...shardChannels(cluster).keys()].sort();
      return JSON.stringify(now) === JSON.stringify(expected.sort());
    });
  });

  await t.test("after the room's master is killed both pods recover and deliver", async () => {
    const port = shardChannels(cluster).get("socketfleet:room:%2F:lobby");
    const pid = Number(fs.readFileSync(path.join(cluster.dir, String(port), "redis.pid"), "utf8"));
    process.kill(pid, "SIGKILL");
    await waitFor(
      `a replica to take over from the master on port ${port}`,
      () => / master,fail /.test(redisCli(cluster.base === port ? port + 1 : cluster.base, "cluster", "nodes")),
      15000,
      200,
    );
    await waitFor("both pods to be ready again", async () => (await ready(podA)) && (await ready(podB)), 20000, 200);
    assert.ok(onA.connected && onB.connected, "a client lost its connection to its pod");
    const [[atA], [atB]] = await publishAndCollect(onA, "lobby", "after-failover", [onA, onB]);
    assert.equal(atA, "after-failover");
    assert.equal(atB, "after-failover");
  });
});
