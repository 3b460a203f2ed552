// Binary attachments relayed through `publish`: nested placeholders resolve to the same bytes,
// each placeholder to the attachment its `num` names, and a packet whose attachments do not match
// its header, or never arrive, is dropped and its connection closed.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, metric, nextEvent, rawSocket, request, startGateway, waitFor, within } = require("./helpers");

test("binary attachments", async (t) => {
  const gateway = await startGateway(["--attachment-timeout", "1s", "--ping-interval", "1s", "--ping-timeout", "1s"]);
  t.after(() => gateway.stop());
  const receiver = await connect(gateway.url);
  t.after(() => receiver.close());
  await request(receiver, "join", { room: "files" });

  async function rawSender() {
    const raw = await rawSocket(gateway);
    raw.ws.send("40");
    await raw.waitForMessage("namespace CONNECT", (m) => m.startsWith("40"));
    return raw;
  }

  await t.test("a nested placeholder delivers the bytes exactly once", async (st) => {
    let deliveries = 0;
    receiver.on("upload", () => deliveries++);
    const received = nextEvent(receiver, "upload");
    const raw = await rawSender();
    st.after(() => raw.ws.terminate());
    raw.ws.send(
      '451-["publish",{"room":"files","event":"upload","data":{"meta":{"name":"a.bin"},"file":{"_placeholder":true,"num":0}}}]',
    );
    raw.ws.send(Buffer.from([0xde, 0xad, 0xbe, 0xef]));
    const [data] = await received;
    assert.equal(data.meta.name, "a.bin");
    assert.ok(Buffer.isBuffer(data.file));
    assert.deepEqual([...data.file], [0xde, 0xad, 0xbe, 0xef]);
    // A later event on the same connection proves no second delivery was queued before it.
    const marker = nextEvent(receiver, "marker");
    raw.ws.send('42["publish",{"room":"files","event":"marker","data":1}]');
    await marker;
    assert.equal(deliveries, 1);
  });

  await t.test("a placeholder three levels deep inside an array resolves", async (st) => {
    const received = nextEvent(receiver, "deep");
    const raw = await rawSender();
    st.after(() => raw.ws.terminate());
    raw.ws.send('451-["publish",{"room":"files","event":"deep","data":[[["x",{"_placeholder":true,"num":0}]]]}]');
    raw.ws.send(Buffer.from([1, 2, 3]));
    const [data] = await received;
    assert.deepEqual([...data[0][0][1]], [1, 2, 3]);
  });

  await t.test("socket.io-client buffers round-trip", async (st) => {
    const sender = await connect(gateway.url);
    st.after(() => sender.close());
    const received = nextEvent(receiver, "pair");
    const ack = await request(sender, "publish", {
      room: "files",
      event: "pair",
      data: { first: Buffer.from("one"), second: [Buffer.from("two")] },
    });
    assert.deepEqual(ack, { ok: true });
    const [data] = await received;
    assert.equal(data.first.toString(), "one");
    assert.equal(data.second[0].toString(), "two");
  });

  await t.test("placeholders listed num 1 before num 0 get their own bytes", async (st) => {
    const received = nextEvent(receiver, "swapped");
    const raw = await rawSender();
    st.after(() => raw.ws.terminate());
    raw.ws.send(
      '452-["publish",{"room":"files","event":"swapped","data":[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]}]',
    );
    raw.ws.send(Buffer.from("zero"));
    raw.ws.send(Buffer.from("one"));
    const [data] = await received;
    assert.equal(data[0].toString(), "one");
    assert.equal(data[1].toString(), "zero");
  });

  await t.test("a header announcing more attachments than placeholders closes the socket", async () => {
    let delivered = false;
    receiver.on("never", () => (delivered = true));
    const before = await metric(gateway, 'socketfleet_protocol_errors_total{kind="invalid_attachment"}');
    const raw = await rawSender();
    raw.ws.send('452-["publish",{"room":"files","event":"never","data":{"_placeholder":true,"num":0}}]');
    raw.ws.send(Buffer.from([1]));
    raw.ws.send(Buffer.from([2]));
    const { code } = await within("close of the socket with a mismatched packet", raw.closed, 5000);
    assert.equal(code, 1002);
    assert.equal(delivered, false);
    assert.equal(await metric(gateway, 'socketfleet_protocol_errors_total{kind="invalid_attachment"}'), before + 1);
  });

  await t.test("a packet whose attachments never arrive closes the socket", async () => {
    let delivered = false;
    receiver.on("never", () => (delivered = true));
    const raw = await rawSender();
    raw.ws.send('452-["publish",{"room":"files","event":"never","data":[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]}]');
    raw.ws.send(Buffer.from([1]));
    // The gateway checks the attachment timeout (1 s here) at each heartbeat (every 1 s here).
    const { code } = await within("close of the socket with a timed-out packet", raw.closed, 8000);
    assert.equal(code, 1002);
    assert.equal(delivered, false);
  });

  await t.test("the gateway keeps serving other sockets", async () => {
    assert.deepEqual(await request(receiver, "join", { room: "still-here" }), { ok: true });
    await waitFor("only the receiver to stay connected", async () => (await metric(gateway, "socket_io_connected")) === 1);
  });
});
