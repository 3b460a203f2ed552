// Connections that send no request head, or only part of one, are closed after
// --header-read-timeout on both ports, so they stop counting toward --max-connections.
"use strict";

const http = require("node:http");
const net = require("node:net");
const test = require("node:test");
const assert = require("node:assert/strict");
const { connect, startGateway, waitFor, within } = require("./helpers");

/**
 * Reads socketfleet_open_connections over a new connection each time. A pooled keep-alive
 * connection idle for the 1 s timeout could be closed by the server just as it is reused.
 */
function openConnectionCount(gateway) {
  return within(
    "GET /metrics",
    new Promise((resolve, reject) => {
      const req = http.get(`${gateway.adminUrl}/metrics`, { agent: false }, (res) => {
        let body = "";
        res.on("data", (chunk) => (body += chunk));
        res.on("end", () => resolve(Number(/^socketfleet_open_connections (\d+)$/m.exec(body)[1])));
      });
      req.on("error", reject);
    }),
  );
}

/** Opens a TCP connection, writes `head` and resolves with a promise of the server's close. */
function openConnection(port, head) {
  return within(
    `TCP connect to port ${port}`,
    new Promise((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.on("error", () => {});
      const closed = new Promise((resolveClosed) => socket.on("close", () => resolveClosed()));
      socket.once("connect", () => {
        if (head) socket.write(head);
        resolve({ socket, closed });
      });
      socket.once("error", reject);
    }),
  );
}

test("header read timeout", async (t) => {
  const gateway = await startGateway(["--header-read-timeout", "1s", "--max-connections", "2"]);
  t.after(() => gateway.stop());

  await t.test("closes silent and half-sent requests on the socket port", async () => {
    const silent = await openConnection(gateway.port, "");
    const partial = await openConnection(gateway.port, "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n");
    t.after(() => [silent, partial].forEach((c) => c.socket.destroy()));
    await waitFor("both connections to count", async () => (await openConnectionCount(gateway)) === 2);

    await within("server close of the silent connection", silent.closed);
    await within("server close of the half-sent request", partial.closed);
    await waitFor("open connections to return to 0", async () => (await openConnectionCount(gateway)) === 0);
  });

  await t.test("admits clients again once the silent connections are closed", async () => {
    const silent = [await openConnection(gateway.port, ""), await openConnection(gateway.port, "")];
    t.after(() => silent.forEach((c) => c.socket.destroy()));
    await Promise.all(silent.map((c, i) => within(`server close of silent connection ${i}`, c.closed)));
    const socket = await connect(gateway.url);
    socket.close();
  });

  await t.test("closes silent connections on the admin port", async () => {
    const silent = await openConnection(gateway.adminPort, "");
    t.after(() => silent.socket.destroy());
    await within("server close of the silent admin connection", silent.closed);
  });

  await t.test("a request sent in time is answered", async () => {
    assert.equal(await openConnectionCount(gateway), 0);
  });
});
