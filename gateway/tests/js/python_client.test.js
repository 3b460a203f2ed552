// python-socketio's client with its default settings (polling first, then websocket) against a
// gateway with polling enabled, and with the websocket transport against the websocket-only default.
"use strict";

const { spawn } = require("node:child_process");
const os = require("node:os");
const path = require("node:path");
const test = require("node:test");
const assert = require("node:assert/strict");
const { startGateway, within } = require("./helpers");

const PYTHON = process.env.SOCKETFLEET_PYTHON || path.join(os.homedir(), ".cache/socketfleet/venv/bin/python");
const CLIENT = path.join(__dirname, "..", "python", "client.py");

function runClient(url, ...transports) {
  const child = spawn(PYTHON, [CLIENT, url, ...transports], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const done = new Promise((resolve) => child.on("exit", (code) => resolve({ code, stdout, stderr })));
  return within("python client to finish", done, 30000).finally(() => child.kill());
}

test("python-socketio with default settings joins, publishes and receives", async (t) => {
  const gateway = await startGateway(["--transport", "polling", "--transport", "websocket"]);
  t.after(() => gateway.stop());
  const { code, stdout, stderr } = await runClient(gateway.url);
  assert.equal(code, 0, `stdout: ${stdout}\nstderr: ${stderr}`);
  const result = JSON.parse(stdout);
  assert.deepEqual(result.news, { from: "python" });
});

test("python-socketio with the websocket transport works against the websocket-only default", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.stop());
  const { code, stdout, stderr } = await runClient(gateway.url, "websocket");
  assert.equal(code, 0, `stdout: ${stdout}\nstderr: ${stderr}`);
  const result = JSON.parse(stdout);
  assert.equal(result.transport, "websocket");
  assert.deepEqual(result.news, { from: "python" });
});
