// SOCKETFLEET_* variables follow the flag names (SOCKETFLEET_TRANSPORT for --transport), and a
// SOCKETFLEET_* variable that no flag reads is named in a warning at startup.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { startGateway, waitFor } = require("./helpers");

test("SOCKETFLEET_TRANSPORT enables polling", async (t) => {
  const gateway = await startGateway([], { SOCKETFLEET_TRANSPORT: "websocket,polling" });
  t.after(() => gateway.stop());
  const res = await fetch(`${gateway.url}/socket.io/?EIO=4&transport=polling`);
  assert.equal(res.status, 200);
  assert.match(await res.text(), /"sid"/);
});

test("unknown SOCKETFLEET variable is named in a warning", async (t) => {
  const gateway = await startGateway([], { SOCKETFLEET_TRANSPORTS: "polling" });
  t.after(() => gateway.stop());
  await waitFor("the warning in the log", () => /WARN.*unknown environment variable.*SOCKETFLEET_TRANSPORTS/.test(gateway.log()));
});
