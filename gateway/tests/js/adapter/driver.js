// Drives socket.io clients for the adapter tests: reads one JSON command per line on stdin and
// writes one JSON event per line on stdout. Commands:
//   {"cmd":"connect","client":"c1","url":"http://127.0.0.1:3000/","readyEvent":"ready"}
//     -> {"type":"connected","client","sid"} once the server sends readyEvent (the test pods send
//     "ready" after the socket joined its id room); readyEvent "connect" reports on connect.
//   {"cmd":"emit","client":"c1","event":"join","data":{...},"ack":true,"tag":"t1"} -> {"type":"ack","client","tag","data"}
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

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  switch (command.cmd) {
    case "connect":
      connect(command);
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
