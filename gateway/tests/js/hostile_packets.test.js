// Hostile or malformed packets, each on a fresh socket: that socket is closed or gets
// CONNECT_ERROR, and the process and other sockets carry on.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, rawSocket, rawUpgrade, request, startGateway, within } = require("./helpers");

// [description, packet sent after the namespace CONNECT]
const CLOSED_AFTER_CONNECT = [
  ["attachment count that must not be pre-allocated", "4999999999-[\"ev\"]"],
  ["empty event array", "42[]"],
  ["event as an object", "42{}"],
  ["event as a string", '42"ev"'],
  ["unterminated array", '42["ev"'],
  ["bare message packet", "4"],
];

// Reserved event names get the socket disconnected from the namespace (packet "41").
const DISCONNECTED = [
  ["reserved connect event", '42["connect"]'],
  ["reserved disconnect event", '42["disconnect"]'],
];

const CLOSED_BEFORE_CONNECT = [
  ["client CONNECT_ERROR with a message", '44{"message":"x"}'],
  ["bare client CONNECT_ERROR", "44"],
];

test("hostile packets", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());
  const bystander = await connect(gateway.url);
  t.after(() => bystander.close());
  await request(bystander, "join", { room: "calm" });

  for (const [description, packet] of CLOSED_AFTER_CONNECT) {
    await t.test(`${description} closes the socket`, async () => {
      const raw = await rawSocket(gateway);
      raw.ws.send("40");
      await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
      raw.ws.send(packet);
      await within(`close after ${JSON.stringify(packet)}`, raw.closed);
    });
  }

  for (const [description, packet] of DISCONNECTED) {
    await t.test(`${description} disconnects the socket`, async (st) => {
      const raw = await rawSocket(gateway);
      st.after(() => raw.ws.terminate());
      raw.ws.send("40");
      await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
      raw.ws.send(packet);
      await raw.waitForMessage(`namespace DISCONNECT after ${JSON.stringify(packet)}`, (m) => m === "41");
    });
  }

  for (const [description, packet] of CLOSED_BEFORE_CONNECT) {
    await t.test(`${description} closes the socket`, async () => {
      const raw = await rawSocket(gateway);
      raw.ws.send(packet);
      await within(`close after ${JSON.stringify(packet)}`, raw.closed);
    });
  }

  await t.test("an invalid placeholder gets an error ack", async (st) => {
    const raw = await rawSocket(gateway);
    st.after(() => raw.ws.terminate());
    raw.ws.send("40");
    await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
    raw.ws.send('451-7["publish",{"room":"calm","event":"e","data":{"_placeholder":"yes","num":0}}]');
    raw.ws.send(Buffer.from([1]));
    const ack = await raw.waitForMessage("ack of the bad placeholder", (m) => m.startsWith("437"));
    assert.match(ack, /error/);
  });

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
