// Drives named socket.io clients for the end-to-end tests, one JSON command per stdin line and one
// JSON reply per stdout line, in order. The Rust test decides what to do, and this process keeps
// the sockets open and records what they receive.
//
// Commands (every reply carries the command's `id` and `ok`, or `error`):
//   {op: "connect", client, url, auth?}   connect and wait for the CONNECT ack; the client rejoins its
//                                         rooms after every reconnect, including after the server
//                                         closed it (a draining gateway does)
//   {op: "request", client, event, payload}  emit with an ack and reply with the ack's value
//   {op: "listen", client, event}         record every `event` the client receives from now on
//   {op: "received", client, event}       reply with the recorded payloads of `event`
//   {op: "state", client}                 reply with connected, socket id, connects and disconnects
//   {op: "close", client}                 disconnect for good
"use strict";

const readline = require("node:readline");
const { io } = require("socket.io-client");

const clients = new Map();

function reply(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

/** Rejects after `ms` with a message naming `what`, unless `promise` settles first. */
function within(what, promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function client(name) {
  const found = clients.get(name);
  if (!found) throw new Error(`no client named ${name}`);
  return found;
}

async function connect({ client: name, url, auth }) {
  const socket = io(url, {
    auth: auth ?? {},
    transports: ["websocket"],
    reconnection: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 2000,
    randomizationFactor: 0.5,
    timeout: 5000,
  });
  const state = { socket, rooms: new Set(), received: new Map(), connects: 0, disconnects: [], closed: false };
  clients.set(name, state);

  socket.on("connect", () => {
    state.connects += 1;
    // A reconnected socket is a new socket on the server: rejoin what the application had joined.
    for (const room of state.rooms) socket.emit("join", { room }, () => {});
  });
  socket.on("disconnect", (reason) => {
    state.disconnects.push(reason);
    // socket.io-client does not reconnect after a server-side disconnect; an application would.
    if (reason === "io server disconnect" && !state.closed) setTimeout(() => socket.connect(), 200);
  });

  await within(`CONNECT of ${name} to ${url}`, new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  }), 10000);
  return { sid: socket.id };
}

async function request({ client: name, event, payload }) {
  const state = client(name);
  const ack = await within(`ack of ${event} from ${name}`, state.socket.emitWithAck(event, payload), 10000);
  if (event === "join" && ack && ack.ok) state.rooms.add(payload.room);
  if (event === "leave" && ack && ack.ok) state.rooms.delete(payload.room);
  return { ack };
}

function listen({ client: name, event }) {
  const state = client(name);
  if (!state.received.has(event)) {
    state.received.set(event, []);
    state.socket.on(event, (...args) => state.received.get(event).push(args.length === 1 ? args[0] : args));
  }
  return {};
}

function received({ client: name, event }) {
  return { messages: client(name).received.get(event) ?? [] };
}

function state({ client: name }) {
  const found = client(name);
  return {
    connected: found.socket.connected,
    sid: found.socket.id ?? null,
    connects: found.connects,
    disconnects: found.disconnects,
  };
}

function close({ client: name }) {
  const found = client(name);
  found.closed = true;
  found.socket.close();
  return {};
}

const operations = { connect, request, listen, received, state, close };

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  // Commands run one after another, so replies come back in the order the test sent them.
  queue = queue.then(async () => {
    let command;
    try {
      command = JSON.parse(line);
      const operation = operations[command.op];
      if (!operation) throw new Error(`unknown op ${command.op}`);
      reply({ id: command.id, ok: true, ...(await operation(command)) });
    } catch (error) {
      reply({ id: command?.id ?? null, ok: false, error: String(error?.message ?? error) });
    }
  });
});
lines.on("close", () => {
  for (const found of clients.values()) found.socket.close();
  process.exit(0);
});
