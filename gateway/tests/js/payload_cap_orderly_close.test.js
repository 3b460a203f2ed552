// A websocket closed for a message over the payload cap ends with the 1009 close frame and FIN,
// not RST, while the client is still sending the rest of the message. Linux answers a close with
// unread data in the receive buffer with RST. The client's pending write then fails with
// ECONNRESET, and a client such as `ws` drops the connection before it reads the close frame, so
// it reports close code 1006 in place of 1009.
"use strict";

const crypto = require("node:crypto");
const net = require("node:net");
const test = require("node:test");
const assert = require("node:assert/strict");
const { startGateway, within } = require("./helpers");

const CAP = 64 * 1024;
const SENT_PAYLOAD = 16 * 1024 * 1024;

/** Builds the header of a masked text frame announcing a payload of `length` bytes. */
function frameHeader(length) {
  const header = Buffer.alloc(14);
  header[0] = 0x81;
  header[1] = 0x80 | 127;
  header.writeBigUInt64BE(BigInt(length), 2);
  crypto.randomBytes(4).copy(header, 10);
  return header;
}

/** Builds a masked text frame holding `text`, of at most 125 bytes. A zero mask key leaves it as is. */
function smallTextFrame(text) {
  const payload = Buffer.from(text);
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
}

/** Returns the close code of the first close frame from the server in `bytes`, or null. */
function closeCode(bytes) {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 0x88 && bytes[i + 1] >= 2 && bytes[i + 1] < 126) return bytes.readUInt16BE(i + 2);
  }
  return null;
}

test("oversized message ends with close frame and FIN", async (t) => {
  const gateway = await startGateway(["--max-payload-bytes", String(CAP)]);
  t.after(() => gateway.stop());

  const socket = net.connect(gateway.port, "127.0.0.1");
  t.after(() => socket.destroy());
  const chunks = [];
  const ended = new Promise((resolve, reject) => {
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("end", resolve);
    socket.on("error", reject);
  });
  const key = crypto.randomBytes(16).toString("base64");
  socket.write(
    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n" +
      `Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`,
  );
  const received = (what, text) =>
    within(
      what,
      new Promise((resolve) => {
        const check = () => (Buffer.concat(chunks).includes(text) ? resolve() : socket.once("data", check));
        check();
      }),
    );
  await received("the 101 response", "\r\n\r\n");
  assert.match(Buffer.concat(chunks).toString("latin1"), /^HTTP\/1\.1 101 /);
  // A socket.io client connects to a namespace before it sends events. The reply also shows
  // that the gateway's writer for this websocket runs, which sends the close frame later.
  await received("the engine.io open packet", '0{"sid"');
  socket.write(smallTextFrame("40"));
  await received("the namespace CONNECT reply", '40{"sid"');

  // The server stops reading at this header. Loopback buffers hold only part of 16 MiB, so the
  // client is still writing when the server closes.
  socket.write(Buffer.concat([frameHeader(SENT_PAYLOAD), Buffer.alloc(SENT_PAYLOAD, 0x61)]));

  await within("the server's FIN (an RST rejects with ECONNRESET)", ended);
  assert.equal(closeCode(Buffer.concat(chunks)), 1009);
});
