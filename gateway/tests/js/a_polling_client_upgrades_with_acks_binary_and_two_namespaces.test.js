// socket.io-client starts on long-polling with two namespaces on one connection and upgrades to
// a websocket while events flow both ways. Every ack and delivery arrives exactly once, Buffers
// cross in both directions, and leaving one namespace keeps the other.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { Manager } = require("socket.io-client");
const { connect, metric, nextEvent, request, startGateway, waitFor, within } = require("./helpers");

function connected(socket, description) {
  return within(description, new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  }));
}

test("a polling client upgrades with acks, binary and two namespaces", async (t) => {
  const gateway = await startGateway(["--transport", "websocket,polling", "--namespace", "/", "--namespace", "/tenant"]);
  t.after(() => gateway.stop());
  const manager = new Manager(gateway.url, { transports: ["polling", "websocket"], reconnection: false });
  const main = manager.socket("/");
  const tenant = manager.socket("/tenant");
  t.after(() => {
    main.close();
    tenant.close();
  });
  const upgraded = new Promise((resolve) => manager.once("open", () => manager.engine.once("upgrade", resolve)));
  await connected(main, "connect to /");
  await connected(tenant, "connect to /tenant");
  const publisher = await connect(gateway.url);
  t.after(() => publisher.close());

  await t.test("acks and deliveries cross the upgrade exactly once", async () => {
    await request(main, "join", { room: "flow" });
    await request(tenant, "join", { room: "tenant-flow" });
    const received = [];
    const tenantReceived = [];
    main.on("n", (n) => received.push(n));
    tenant.on("n", (n) => tenantReceived.push(n));
    const acks = [];
    for (let i = 0; i < 300; i++) {
      acks.push(request(publisher, "publish", { room: "flow", event: "n", data: i }));
      if (i % 3 === 0) acks.push(request(main, "join", { room: `extra-${i}` }));
      if (i % 5 === 0) acks.push(request(tenant, "publish", { room: "tenant-flow", event: "n", data: i }));
    }
    for (const ack of await Promise.all(acks)) assert.deepEqual(ack, { ok: true });
    await upgraded;
    assert.equal(manager.engine.transport.name, "websocket");
    await waitFor("300 deliveries on /", () => received.length >= 300);
    await waitFor("60 deliveries on /tenant", () => tenantReceived.length >= 60);
    // A round trip after the last delivery proves no duplicate is still on its way.
    await request(main, "join", { room: "settle" });
    await request(tenant, "join", { room: "settle" });
    assert.deepEqual([...received].sort((a, b) => a - b), Array.from({ length: 300 }, (_, i) => i));
    assert.deepEqual([...tenantReceived].sort((a, b) => a - b), Array.from({ length: 60 }, (_, i) => i * 5));
  });

  await t.test("Buffers cross in both directions on both namespaces", async () => {
    const onMain = nextEvent(main, "bin");
    assert.deepEqual(await request(main, "publish", { room: "flow", event: "bin", data: Buffer.from([1, 2, 255]) }), { ok: true });
    assert.deepEqual(await onMain, [Buffer.from([1, 2, 255])]);
    const onTenant = nextEvent(tenant, "bin");
    const data = { nested: [Buffer.from([9]), { deeper: Buffer.alloc(3000, 7) }] };
    assert.deepEqual(await request(tenant, "publish", { room: "tenant-flow", event: "bin", data }), { ok: true });
    assert.deepEqual(await onTenant, [data]);
  });

  await t.test("leaving /tenant keeps / on the same connection", async () => {
    tenant.disconnect();
    await waitFor("one socket left connected", async () => (await metric(gateway, "socket_io_connected")) === 2);
    const received = nextEvent(main, "still-here");
    await request(publisher, "publish", { room: "flow", event: "still-here", data: true });
    assert.deepEqual(await received, [true]);
    assert.equal(main.connected, true);
  });

  await t.test("the gauge returns to zero once everyone left", async () => {
    main.close();
    publisher.close();
    await waitFor("socket_io_connected 0", async () => (await metric(gateway, "socket_io_connected")) === 0);
    assert.equal(await metric(gateway, 'socket_io_disconnect_total{reason="client_disconnect"}'), 3);
  });
});
