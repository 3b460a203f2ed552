// Drives socket.io clients for the adapter tests: reads one JSON command per line on stdin and
// writes one JSON event per line on stdout. Commands:
//   {"cmd":"connect","client":"c1","url":"http://127.0.0.1:3000/","readyEvent":"ready"}
//     -> {"type":"connected","client","sid"} once the server sends readyEvent (the test pods send
//     "ready" after the socket joined its id room); readyEvent "connect" reports on connect.
//   {"cmd":"emit","client":"c1","event":"join","data":{...},"ack":true,"tag":"t1"} -> {"type":"ack","client","tag","data"}
//   {"cmd":"connect_many","prefix":"p0-","count":300,"url":"...","room":"all"}
//     -> {"type":"connected_many","prefix","count"} once every client got "ready" and joined room
//     (events these clients receive are counted, not written, see "counts")
//   {"cmd":"counts"} -> {"type":"counts","counts":{event: number}} for the connect_many clients
//   {"cmd":"close","client":"c1"}                                   -> {"type":"closed","client"}
//   {"cmd":"exit"}
// Every event a client receives is written as {"type":"event","client","event","at","data"}, where
// "at" is the arrival time in milliseconds since the Unix epoch, with sub-millisecond digits. A client
// acknowledges events whose last argument is an ack callback with {"client": <id>, "event": <name>}.
"use strict";
const readline = require("node:readline");
const { io } = require("socket.io-client");

const clients = new Map();
const write = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function connect({ client, url, readyEvent = "ready" }) {
  const socket = io(url, { transports: ["websocket"], reconnection: false, forceNew: true });
  clients.set(client, socket);
  if (readyEvent === "connect") {
    socket.on("connect", () => write({ type: "connected", client, sid: socket.id }));
  } else {
    socket.on(readyEvent, (sid) => write({ type: "connected", client, sid }));
  }
  socket.on("connect_error", (err) => write({ type: "connect_error", client, message: String(err && err.message) }));
  socket.on("disconnect", (reason) => write({ type: "disconnected", client, reason }));
  socket.onAny((event, ...args) => {
    if (event === "ready") return;
    const last = args[args.length - 1];
    if (typeof last === "function") {
      args.pop();
      last({ client, event });
    }
    write({ type: "event", client, event, at: performance.timeOrigin + performance.now(), data: args.length > 1 ? args : args[0] });
  });
}

// Clients made by connect_many: many sockets, so their events are counted instead of written.
const bulkCounts = {};
function connectMany({ prefix, count, url, room }) {
  let joined = 0;
  for (let i = 0; i < count; i++) {
    const socket = io(url, { transports: ["websocket"], reconnection: false, forceNew: true });
    clients.set(prefix + i, socket);
    socket.on("ready", () => {
      socket.emit("join", { room }, () => {
        joined += 1;
        if (joined === count) write({ type: "connected_many", prefix, count });
      });
    });
    socket.onAny((event, ...args) => {
      if (event === "ready") return;
      bulkCounts[event] = (bulkCounts[event] || 0) + 1;
      const last = args[args.length - 1];
      if (typeof last === "function") last({ client: prefix + i, event });
    });
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  switch (command.cmd) {
    case "connect":
      connect(command);
      break;
    case "connect_many":
      connectMany(command);
      break;
    case "counts":
      write({ type: "counts", counts: bulkCounts });
      break;
    case "emit": {
      const socket = clients.get(command.client);
      if (command.ack) {
        socket.timeout(10000).emit(command.event, command.data, (err, data) =>
          write({ type: "ack", client: command.client, tag: command.tag, error: err ? String(err.message) : null, data }));
      } else {
        socket.emit(command.event, command.data);
      }
      break;
    }
    case "close": {
      const socket = clients.get(command.client);
      if (socket) socket.close();
      clients.delete(command.client);
      write({ type: "closed", client: command.client });
      break;
    }
    case "exit":
      for (const socket of clients.values()) socket.close();
      process.exit(0);
  }
});
rl.on("close", () => process.exit(0));
