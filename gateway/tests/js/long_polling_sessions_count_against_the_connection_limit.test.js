// The per-pod limit (--max-connections) also bounds long-polling sessions. A long-polling client
// holds no TCP connection between its requests, so counting open connections alone lets any
// number of sessions in: each of them costs memory and a socket, and /readyz stays true.
"use strict";

const http = require("node:http");
const test = require("node:test");
const assert = require("node:assert/strict");
const { metric, rawUpgrade, startGateway, within } = require("./helpers");

/** Sends one HTTP request on a new connection that the server closes after answering. */
function send(gateway, method, path, body) {
  return within(
    `answer to ${method} ${path}`,
    new Promise((resolve, reject) => {
      const options = { host: "127.0.0.1", port: gateway.port, method, path, agent: false, headers: { connection: "close" } };
      const req = http.request(options, (res) => {
        let text = "";
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
      });
      req.on("error", reject);
      req.end(body);
    }),
  );
}

/** Opens a long-polling session and connects it to the main namespace; returns the handshake's status. */
async function openPollingSession(gateway) {
  const handshake = await send(gateway, "GET", "/socket.io/?EIO=4&transport=polling");
  if (handshake.status !== 200) return handshake.status;
  const { sid } = JSON.parse(handshake.body.slice(1));
  const path = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
  assert.equal((await send(gateway, "POST", path, "40")).status, 200);
  assert.match((await send(gateway, "GET", path)).body, /^40\{/);
  return handshake.status;
}

test("long-polling sessions count against the connection limit", async (t) => {
  const limit = 3;
  const gateway = await startGateway([
    "--max-connections",
    String(limit),
    "--transport",
    "websocket",
    "--transport",
    "polling",
  ]);
  t.after(() => gateway.stop());

  const statuses = [];
  for (let i = 0; i < 10; i++) statuses.push(await openPollingSession(gateway));

  assert.deepEqual(statuses.slice(0, limit), [200, 200, 200]);
  assert.ok(statuses.slice(limit).every((status) => status === 503), `handshake statuses: ${statuses}`);
  assert.equal(await metric(gateway, "socket_io_connected"), limit);
  assert.equal((await fetch(`${gateway.adminUrl}/readyz`)).status, 503);
  assert.equal((await rawUpgrade(gateway)).status, 503);
});
