// An event whose ack id does not fit in 64 bits closes the websocket with 1002 and is counted as
// invalid_packet. socketioxide would read such an id as no id: the event would run and its ack
// would never be sent.
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
  const before = await metric(gateway, 'socketfleet_rejected_connections_total{reason="invalid_packet"}');

  raw.ws.send('4218446744073709551615["join",{"room":"x"}]');

  const { code, reason } = await within("close after the oversized ack id", raw.closed);
  assert.equal(code, 1002);
  assert.match(reason, /ack id/);
  assert.equal(await metric(gateway, 'socketfleet_rejected_connections_total{reason="invalid_packet"}'), before + 1);
  assert.equal(await metric(gateway, 'socketfleet_client_events_total{event="join",result="ok"}'), 0);
});
