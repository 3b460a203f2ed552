// Payload cap on websocket messages. A message over the cap closes the connection with 1009 at its
// frame header and is counted as payload_too_large. A message of exactly the cap is delivered.
"use strict";

const fs = require("node:fs");
const test = require("node:test");
const assert = require("node:assert/strict");
const { metric, rawSocket, startGateway, within } = require("./helpers");

const CAP = 1024 * 1024;

/** Builds a `publish` event packet of exactly `length` bytes. */
function publishPacket(length) {
  const head = '42["publish",{"room":"big","event":"e","data":"';
  const tail = '"}]';
  return head + "x".repeat(length - head.length - tail.length) + tail;
}

async function joinedRawSocket(gateway) {
  const raw = await rawSocket(gateway);
  raw.ws.send("40");
  await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
  raw.ws.send('420["join",{"room":"big"}]');
  await raw.waitForMessage("join ack", (m) => m.startsWith("430"));
  return raw;
}

function rssBytes(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) * 1024;
}

test("payload cap on websocket", async (t) => {
  const gateway = await startGateway(["--max-payload-bytes", String(CAP)]);
  t.after(() => gateway.stop());

  await t.test("a message of exactly the cap is delivered", async (st) => {
    const raw = await joinedRawSocket(gateway);
    st.after(() => raw.ws.terminate());
    const packet = publishPacket(CAP);
    assert.equal(Buffer.byteLength(packet), CAP);
    raw.ws.send(packet);
    const delivered = await raw.waitForMessage("delivery of the capped message", (m) => m.startsWith('42["e"'));
    assert.ok(delivered.length > CAP - 100);
  });

  await t.test("a text message 24 bytes over the cap closes with 1009", async () => {
    const before = await metric(gateway, 'socketfleet_rejected_connections_total{reason="payload_too_large"}');
    const raw = await joinedRawSocket(gateway);
    raw.ws.send(publishPacket(CAP + 24));
    const { code, reason } = await within("close after oversized message", raw.closed);
    assert.equal(code, 1009);
    assert.match(reason, /payload too large/);
    const after = await metric(gateway, 'socketfleet_rejected_connections_total{reason="payload_too_large"}');
    assert.equal(after, before + 1);
  });

  await t.test("continuation frames are refused before the message completes", async () => {
    const raw = await joinedRawSocket(gateway);
    const frame = 64 * 1024;
    const packet = Buffer.from(publishPacket(CAP + 2 * frame));
    // Every frame but the last, so the cap is crossed by a frame with more to follow: the server
    // must close without waiting for the final frame.
    for (let offset = 0; offset + frame < packet.length; offset += frame) {
      raw.ws.send(packet.subarray(offset, offset + frame), { binary: false, fin: false });
    }
    const { code } = await within("close after the frame that crosses the cap", raw.closed);
    assert.equal(code, 1009);
  });

  await t.test("a 2 MiB binary attachment closes with 1009 without growing memory by its size", async () => {
    const raw = await joinedRawSocket(gateway);
    const rssBefore = rssBytes(gateway.child.pid);
    raw.ws.send('451-["publish",{"room":"big","event":"e","data":{"_placeholder":true,"num":0}}]');
    raw.ws.send(Buffer.alloc(2 * CAP, 0xab));
    const { code } = await within("close after oversized attachment", raw.closed);
    assert.equal(code, 1009);
    const growth = rssBytes(gateway.child.pid) - rssBefore;
    assert.ok(growth < CAP, `RSS grew by ${growth} bytes`);
  });

  await t.test("the gateway keeps serving", async () => {
    const raw = await joinedRawSocket(gateway);
    raw.ws.terminate();
  });
});
