// An event whose ack id is larger than a JavaScript client can represent closes the websocket with
// 1002 and is counted as invalid_ack_id. Read as no id, the event would run and its ack would never
// be sent.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { metric, rawSocket, startGateway, within } = require("./helpers");

test("oversized ack id closes the socket", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());
  const raw = await rawSocket(gateway);
  t.after(() => raw.ws.terminate());
  raw.ws.send("40");
  await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
  const before = await metric(gateway, 'socketfleet_protocol_errors_total{kind="invalid_ack_id"}');

  raw.ws.send('4218446744073709551615["join",{"room":"x"}]');

  const { code, reason } = await within("close after the oversized ack id", raw.closed);
  assert.equal(code, 1002);
  assert.match(reason, /ack id/);
  assert.equal(await metric(gateway, 'socketfleet_protocol_errors_total{kind="invalid_ack_id"}'), before + 1);
  assert.equal(await metric(gateway, 'socketfleet_client_events_total{event="join",result="ok"}'), 0);
});
