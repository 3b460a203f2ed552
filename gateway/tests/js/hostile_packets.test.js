// Hostile or malformed packets, each on a fresh socket: that connection is closed with a protocol
// error that is counted by kind, or gets CONNECT_ERROR, and the process and other sockets carry on.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, metric, rawSocket, rawUpgrade, request, startGateway, within } = require("./helpers");

// [description, packets sent after the namespace CONNECT, protocol error kind counted]. Each
// closes the connection with close code 1002 and a reason that names the problem.
const CLOSED_AFTER_CONNECT = [
  ["unknown packet type", ["4999999999-[\"ev\"]"], "unknown_packet_type"],
  ["attachment count that must not be pre-allocated", ["454999999999-[\"ev\"]"], "too_many_attachments"],
  ["empty event array", ["42[]"], "invalid_event"],
  ["event as an object", ["42{}"], "invalid_event"],
  ["event as a string", ['42"ev"'], "invalid_event"],
  ["unterminated array", ['42["ev"'], "invalid_json"],
  ["bare message packet", ["4"], "empty_packet"],
  ["reserved connect event", ['42["connect"]'], "reserved_event"],
  ["reserved disconnect event", ['42["disconnect"]'], "reserved_event"],
  [
    "placeholder num 9 with one attachment",
    ['451-["publish",{"room":"calm","event":"e","data":{"_placeholder":true,"num":9}}]', Buffer.from([1])],
    "invalid_attachment",
  ],
  [
    'placeholder num "length"',
    ['451-["publish",{"room":"calm","event":"e","data":{"_placeholder":true,"num":"length"}}]', Buffer.from([1])],
    "invalid_attachment",
  ],
  [
    'placeholder "yes"',
    ['451-7["publish",{"room":"calm","event":"e","data":{"_placeholder":"yes","num":0}}]', Buffer.from([1])],
    "invalid_attachment",
  ],
];

const CLOSED_BEFORE_CONNECT = [
  ["client CONNECT_ERROR with a message", '44{"message":"x"}', "client_connect_error"],
  ["bare client CONNECT_ERROR", "44", "client_connect_error"],
];

function protocolErrors(gateway, kind) {
  return metric(gateway, `socketfleet_protocol_errors_total{kind="${kind}"}`);
}

test("hostile packets", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());
  const bystander = await connect(gateway.url);
  t.after(() => bystander.close());
  await request(bystander, "join", { room: "calm" });

  for (const [description, packets, kind] of CLOSED_AFTER_CONNECT) {
    await t.test(`${description} closes the connection with a protocol error`, async () => {
      const before = await protocolErrors(gateway, kind);
      const raw = await rawSocket(gateway);
      raw.ws.send("40");
      await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
      for (const packet of packets) {
        raw.ws.send(packet);
      }
      const { code, reason } = await within(`close after ${JSON.stringify(packets[0])}`, raw.closed);
      assert.equal(code, 1002);
      assert.ok(reason.length > 0, "the close reason names the problem");
      assert.equal(await protocolErrors(gateway, kind), before + 1);
    });
  }

  for (const [description, packet, kind] of CLOSED_BEFORE_CONNECT) {
    await t.test(`${description} closes the connection with a protocol error`, async () => {
      const before = await protocolErrors(gateway, kind);
      const raw = await rawSocket(gateway);
      raw.ws.send(packet);
      const { code } = await within(`close after ${JSON.stringify(packet)}`, raw.closed);
      assert.equal(code, 1002);
      assert.equal(await protocolErrors(gateway, kind), before + 1);
    });
  }

  await t.test("an unknown namespace gets CONNECT_ERROR", async (st) => {
    const raw = await rawSocket(gateway);
    st.after(() => raw.ws.terminate());
    raw.ws.send("40/no-such-ns,");
    await raw.waitForMessage("CONNECT_ERROR", (m) => m.startsWith("44/no-such-ns,"));
  });

  await t.test("an EIO=3 handshake is refused", async () => {
    const answer = await rawUpgrade(gateway, "EIO=3&transport=websocket");
    assert.equal(answer.status, 400);
  });

  await t.test("other sockets are untouched", async () => {
    assert.equal(bystander.connected, true);
    assert.deepEqual(await request(bystander, "join", { room: "after" }), { ok: true });
  });
});
