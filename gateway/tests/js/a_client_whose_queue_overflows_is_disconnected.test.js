// A client that stops reading while its room gets broadcasts is disconnected as a slow consumer
// once more than 1,024 packets wait for it, long before the heartbeat would drop it (ping 25 s
// here), so the gateway's memory for it stays bounded.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { metric, rawSocket, startGateway, waitFor } = require("./helpers");

const PUBLISHERS = 8;
const MAX_PUBLISHES = 20000;

test("a client whose queue overflows is disconnected as a slow consumer", async (t) => {
  const token = "queue-overflow-token";
  const gateway = await startGateway([], { SOCKETFLEET_PUBLISH_TOKEN: token });
  t.after(() => gateway.stop());

  const raw = await rawSocket(gateway);
  t.after(() => raw.ws.terminate());
  raw.ws.send("40");
  await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
  raw.ws.send('420["join",{"room":"firehose"}]');
  await raw.waitForMessage("join ack", (m) => m.startsWith("430"));
  // Stop reading: the kernel buffers fill, then packets wait in the gateway's queue.
  raw.ws._socket.pause();

  const body = JSON.stringify({ room: "firehose", event: "tick", data: "x".repeat(16 * 1024) });
  let sent = 0;
  let stop = false;
  const publisher = async () => {
    while (!stop && sent < MAX_PUBLISHES) {
      sent++;
      await fetch(`${gateway.adminUrl}/api/v1/publish`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body,
      }).catch(() => {});
    }
  };
  const publishers = Array.from({ length: PUBLISHERS }, publisher);
  t.after(() => (stop = true));

  await waitFor(
    "the never-reading client to be disconnected",
    async () => (await metric(gateway, "socket_io_connected")) === 0,
    20000,
    100,
  );
  stop = true;
  await Promise.all(publishers);
  assert.ok(sent > 1024, `only ${sent} broadcasts were sent`);
  assert.equal(await metric(gateway, 'socket_io_disconnect_total{reason="slow_consumer"}'), 1);
  assert.equal(await metric(gateway, 'socket_io_disconnect_total{reason="ping_timeout"}'), 0);
});
