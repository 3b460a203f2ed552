// A half-open client: its process is stopped with SIGSTOP, so it neither reads nor answers pings
// and its TCP connection stays open. With a 1 s ping interval and 1 s timeout the gateway drops
// it on websocket and on long-polling, and socket_io_connected and open connections go back to 0.
"use strict";

const { spawn } = require("node:child_process");
const test = require("node:test");
const assert = require("node:assert/strict");
const { metric, startGateway, waitFor, within } = require("./helpers");

const PING_INTERVAL_MS = 1000;
const PING_TIMEOUT_MS = 1000;

/** Starts a node process whose socket.io-client joins `room` and prints "joined". */
async function startClient(t, url, transport, room) {
  const script = `
    const { io } = require("socket.io-client");
    const socket = io(${JSON.stringify(url)}, { transports: [${JSON.stringify(transport)}], upgrade: false, reconnection: false });
    socket.on("connect", () => socket.emit("join", { room: ${JSON.stringify(room)} }, () => console.log("joined")));
  `;
  const child = spawn(process.execPath, ["-e", script], { cwd: __dirname, stdio: ["ignore", "pipe", "inherit"] });
  t.after(() => child.kill("SIGKILL"));
  await within(`the ${transport} client to join ${room}`, new Promise((resolve) => child.stdout.once("data", resolve)));
  return child;
}

test("a stopped client process is dropped within ping interval and timeout", async (t) => {
  const gateway = await startGateway([
    "--ping-interval",
    `${PING_INTERVAL_MS}ms`,
    "--ping-timeout",
    `${PING_TIMEOUT_MS}ms`,
    "--transport",
    "websocket",
    "--transport",
    "polling",
  ]);
  t.after(() => gateway.stop());

  let dropped = 0;
  for (const transport of ["websocket", "polling"]) {
    await t.test(`over ${transport}`, async () => {
      const child = await startClient(t, gateway.url, transport, `frozen-${transport}`);
      assert.equal(await metric(gateway, "socket_io_connected"), 1);

      child.kill("SIGSTOP");
      // One interval until the ping, one timeout until the missing pong counts, plus slack.
      await waitFor(
        "the stopped client to be dropped",
        async () => (await metric(gateway, "socket_io_connected")) === 0,
        2 * (PING_INTERVAL_MS + PING_TIMEOUT_MS),
        50,
      );
      dropped++;
      assert.equal(await metric(gateway, 'socket_io_disconnect_total{reason="ping_timeout"}'), dropped);
      assert.equal(await metric(gateway, "socketfleet_open_connections"), 0);
    });
  }
});
