// A websocket client that stops reading while its room gets a steady stream of broadcasts is
// dropped as a slow consumer once its queue overflows. The heartbeat (25 s interval, 20 s timeout)
// cannot be what drops it within the wait. The gateway's memory stays bounded meanwhile.
// Scaled: 8 KB broadcasts at about 400/s fill loopback's socket buffers (a few MB) and the
// 1,024-packet queue within seconds.
"use strict";

const fs = require("node:fs");
const test = require("node:test");
const assert = require("node:assert/strict");
const { metric, rawSocket, startGateway, waitFor, within } = require("./helpers");

/** Resident set size of a process, in KiB. */
function rssKib(pid) {
  return Number(fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]);
}

test("a client that stops reading is dropped as a slow consumer before the heartbeat", async (t) => {
  const token = "slow-reader-token";
  const gateway = await startGateway(["--ping-interval", "25s", "--ping-timeout", "20s"], {
    SOCKETFLEET_PUBLISH_TOKEN: token,
  });
  t.after(() => gateway.stop());

  const raw = await rawSocket(gateway);
  t.after(() => raw.ws.terminate());
  raw.ws.send("40");
  await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
  raw.ws.send('420["join",{"room":"firehose"}]');
  await raw.waitForMessage("join ack", (m) => m.startsWith("430"));
  // Stop reading: the kernel buffers fill, then the gateway's writes to this client stall.
  raw.ws._socket.pause();

  const rssBefore = rssKib(gateway.child.pid);
  let rssMax = rssBefore;
  const body = JSON.stringify({ room: "firehose", event: "tick", data: "x".repeat(8 * 1024) });
  let sent = 0;
  const firehose = setInterval(() => {
    rssMax = Math.max(rssMax, rssKib(gateway.child.pid));
    for (let i = 0; i < 4 && sent < 8000; i++) {
      sent++;
      fetch(`${gateway.adminUrl}/api/v1/publish`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body,
      }).catch(() => {});
    }
  }, 10);
  t.after(() => clearInterval(firehose));

  await waitFor(
    "the stalled client to be disconnected as a slow consumer",
    async () => (await metric(gateway, 'socket_io_disconnect_total{reason="slow_consumer"}')) === 1,
    15000,
    100,
  );
  clearInterval(firehose);
  assert.equal(await metric(gateway, "socket_io_connected"), 0);
  assert.equal(await metric(gateway, 'socket_io_disconnect_total{reason="ping_timeout"}'), 0);
  // The queue contains at most 1,024 packets of 8 KB: far below 64 MiB of growth.
  assert.ok(rssMax - rssBefore < 64 * 1024, `RSS grew from ${rssBefore} KiB to ${rssMax} KiB`);

  // Reading again, the client finds the connection closed by the server. The close frame (1008)
  // queues behind megabytes the client never read, so the gateway may give up on it after 2 s
  // and the client then sees 1006.
  raw.ws._socket.resume();
  const closed = await within("the stalled client's close", raw.closed, 10000);
  assert.ok([1006, 1008].includes(closed.code), `close code ${closed.code}`);
});
