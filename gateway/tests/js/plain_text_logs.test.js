// Text logs written to a pipe (a pod's log file) carry no ANSI colour codes.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { startGateway, waitFor } = require("./helpers");

test("text logs to a pipe have no colour codes", async (t) => {
  const gateway = await startGateway(["--log-format", "text"]);
  t.after(() => gateway.stop());
  await waitFor("the startup log line", () => gateway.log().includes("gateway started"));
  assert.doesNotMatch(gateway.log(), /\x1b\[/);
});
