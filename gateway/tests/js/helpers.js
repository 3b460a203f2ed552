// Shared helpers for the gateway's integration tests: start a real socketfleet-gateway process,
// wait for it, and talk to it with the npm socket.io-client, raw websockets or HTTP.
"use strict";

const { spawn } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { io } = require("socket.io-client");
const WebSocket = require("ws");

const TARGET_DIR = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache/socketfleet/target");
const GATEWAY_BIN = process.env.SOCKETFLEET_GATEWAY_BIN || path.join(TARGET_DIR, "debug/socketfleet-gateway");

/** True when SOCKETFLEET_SOAK=1 selects the full scale of the field-case tests (`make soak`). */
const SOAK = process.env.SOCKETFLEET_SOAK === "1";

/** Returns a TCP port that was free a moment ago on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves when `check` returns a truthy value; rejects after `timeoutMs` naming `what`. */
async function waitFor(what, check, timeoutMs = 10000, intervalMs = 25) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Rejects after `timeoutMs` with a message naming `what`, unless `promise` settles first. */
function within(what, promise, timeoutMs = 10000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Starts a gateway with extra flags and waits until /readyz returns 200. */
async function startGateway(flags = [], env = {}) {
  const port = await freePort();
  const adminPort = await freePort();
  const args = ["--bind-address", "127.0.0.1", "--port", String(port), "--admin-port", String(adminPort), ...flags];
  const child = spawn(GATEWAY_BIN, args, {
    env: { PATH: process.env.PATH, SOCKETFLEET_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));

  const gateway = {
    port,
    adminPort,
    url: `http://127.0.0.1:${port}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    child,
    exited,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
  try {
    await waitFor("gateway /readyz", async () => {
      if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}:\n${log}`);
      const res = await fetch(`${gateway.adminUrl}/readyz`).catch(() => null);
      return res && res.status === 200;
    });
  } catch (err) {
    await gateway.stop();
    throw err;
  }
  return gateway;
}

/** Connects a socket.io client with the library's defaults plus `options`; resolves once connected. */
function connect(url, options = {}) {
  const socket = io(url, { transports: ["websocket"], reconnection: false, forceNew: true, ...options });
  return within(
    "socket.io connect",
    new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(socket));
      socket.once("connect_error", (err) => {
        socket.close();
        reject(err);
      });
    }),
  );
}

/** Emits with an ack and resolves with the ack's payload. */
function request(socket, event, payload, timeoutMs = 5000) {
  return within(`ack of ${event}`, socket.emitWithAck(event, payload), timeoutMs);
}

/** Resolves with the next `event` received by `socket`. */
function nextEvent(socket, event, timeoutMs = 5000) {
  return within(`event ${event}`, new Promise((resolve) => socket.once(event, (...args) => resolve(args))), timeoutMs);
}

/** Opens a raw Engine.IO v4 websocket and resolves once the open packet ("0{...}") arrived. */
function rawSocket(gateway, query = "EIO=4&transport=websocket") {
  const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/socket.io/?${query}`);
  const messages = [];
  const waiters = [];
  ws.on("message", (data, isBinary) => {
    const message = isBinary ? data : data.toString();
    messages.push(message);
    for (const waiter of waiters.splice(0)) waiter();
  });
  const closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on("error", () => {});
  const raw = {
    ws,
    messages,
    closed,
    /** Resolves with the first message (from the start) matching `predicate`. */
    waitForMessage(what, predicate, timeoutMs = 5000) {
      return within(
        what,
        new Promise((resolve) => {
          const check = () => {
            const found = messages.find((m) => typeof m === "string" && predicate(m));
            if (found !== undefined) resolve(found);
            else waiters.push(check);
          };
          check();
        }),
        timeoutMs,
      );
    },
  };
  return within(
    "raw websocket open packet",
    new Promise((resolve, reject) => {
      ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
      ws.once("error", reject);
      raw.waitForMessage("open packet", (m) => m.startsWith("0{")).then(() => resolve(raw));
    }),
  );
}

/** Sends a websocket upgrade request by hand and resolves with the status, headers and body. */
function rawUpgrade(gateway, query = "EIO=4&transport=websocket") {
  return within(
    "raw HTTP upgrade answer",
    new Promise((resolve, reject) => {
      const req = http.request({
        host: "127.0.0.1",
        port: gateway.port,
        path: `/socket.io/?${query}`,
        headers: {
          Connection: "Upgrade",
          Upgrade: "websocket",
          "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": crypto.randomBytes(16).toString("base64"),
        },
      });
      req.on("upgrade", (res, socket) => {
        socket.destroy();
        resolve({ status: res.statusCode, headers: res.headers, body: "" });
      });
      req.on("response", (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body }));
      });
      req.on("error", reject);
      req.end();
    }),
  );
}

/** Reads one sample of a Prometheus metric (exact name with labels) from /metrics, or 0. */
async function metric(gateway, nameWithLabels) {
  const text = await (await fetch(`${gateway.adminUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(nameWithLabels + " "));
  return line ? Number(line.split(" ")[1]) : 0;
}

/** Reads the resident set size of the gateway process in bytes from /proc (Linux only). */
function rssBytes(gateway) {
  const status = fs.readFileSync(`/proc/${gateway.child.pid}/status`, "utf8");
  const line = status.split("\n").find((l) => l.startsWith("VmRSS:"));
  return Number(line.split(/\s+/)[1]) * 1024;
}

/** Formats a byte count in MiB with one decimal, for soak logs. */
function mib(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** Signs an HS256 JWT with `secret`. */
function signToken(secret, claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  const signature = crypto.createHmac("sha256", secret).update(body).digest("base64url");
  return `${body}.${signature}`;
}

/** Writes `content` to a new temporary file and returns its path. */
function tempFile(name, content) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "socketfleet-test-"));
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return file;
}

module.exports = {
  SOAK,
  connect,
  freePort,
  metric,
  mib,
  nextEvent,
  rawSocket,
  rawUpgrade,
  request,
  rssBytes,
  signToken,
  startGateway,
  tempFile,
  waitFor,
  within,
};
