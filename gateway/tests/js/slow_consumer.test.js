// A client that never reads while the server broadcasts to its room is disconnected instead of
// growing memory. Scaled down: 1 KB at 100/s for as long as it takes, with ping 2 s / timeout 2 s.
// The never-reading client cannot receive pings, so the heartbeat drops it before its queue
// overflows (see a_client_that_stops_reading_is_dropped_as_a_slow_consumer_before_the_heartbeat.test.js
// for that path).
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { metric, rawSocket, startGateway, waitFor } = require("./helpers");

test("a client that never reads is disconnected", async (t) => {
  const token = "slow-consumer-token";
  const gateway = await startGateway(["--ping-interval", "2s", "--ping-timeout", "2s"], {
    SOCKETFLEET_PUBLISH_TOKEN: token,
  });
  t.after(() => gateway.stop());

  const raw = await rawSocket(gateway);
  raw.ws.send("40");
  await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
  raw.ws.send('420["join",{"room":"firehose"}]');
  await raw.waitForMessage("join ack", (m) => m.startsWith("430"));
  // Stop reading: the kernel buffers fill and the server's writes stall.
  raw.ws._socket.pause();

  const payload = "x".repeat(1024);
  let sent = 0;
  const firehose = setInterval(async () => {
    sent++;
    await fetch(`${gateway.adminUrl}/api/v1/publish`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ room: "firehose", event: "tick", data: payload }),
    }).catch(() => {});
  }, 10);
  t.after(() => clearInterval(firehose));

  await waitFor(
    "the never-reading client to be disconnected",
    async () => (await metric(gateway, "socket_io_connected")) === 0,
    15000,
    100,
  );
  clearInterval(firehose);
  assert.ok(sent > 100, `only ${sent} broadcasts were sent`);
  assert.equal(await metric(gateway, 'socket_io_disconnect_total{reason="ping_timeout"}'), 1);
  raw.ws.terminate();
});
