// A client turned away at the connection limit gets 503 with `Connection: close`, and the
// server closes the TCP connection, so the rejected client does not keep a slot.
"use strict";

const net = require("node:net");
const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, metric, startGateway, waitFor, within } = require("./helpers");

const UPGRADE_REQUEST =
  "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n" +
  "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/** Sends a websocket upgrade over raw TCP and resolves with all bytes read until the server closes. */
function upgradeUntilClose(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(UPGRADE_REQUEST));
    let received = "";
    socket.on("data", (chunk) => (received += chunk));
    socket.on("end", () => resolve(received));
    socket.on("error", reject);
  });
}

test("rejected connection is closed by the server", async (t) => {
  // The header read timeout is far longer than the waits below, so only the 503 can close it.
  const gateway = await startGateway(["--max-connections", "1", "--header-read-timeout", "60s"]);
  t.after(() => gateway.stop());
  const socket = await connect(gateway.url);
  t.after(() => socket.close());

  const response = await within("server close after the 503", upgradeUntilClose(gateway.port));
  assert.match(response, /^HTTP\/1\.1 503 /);
  assert.match(response, /\r\nconnection: close\r\n/i);
  await waitFor("open connections to return to 1", async () => (await metric(gateway, "socketfleet_open_connections")) === 1);
});
