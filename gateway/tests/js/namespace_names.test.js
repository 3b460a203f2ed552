// Namespace names: names outside the naming rule get CONNECT_ERROR and are refused at startup.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const path = require("node:path");
const os = require("node:os");
const { connect, rawSocket, startGateway } = require("./helpers");

const BAD_NAMES = ["/Acme, Inc.", "/tenant,x", "/chat?x=1", "/café", "/" + "a".repeat(300), "/a#b"];

test("namespace names", async (t) => {
  const gateway = await startGateway(["--namespace", "/", "--namespace", "/tenant"]);
  t.after(() => gateway.stop());

  for (const name of BAD_NAMES) {
    await t.test(`CONNECT to ${JSON.stringify(name.slice(0, 20))} gets CONNECT_ERROR`, async (st) => {
      const raw = await rawSocket(gateway);
      st.after(() => raw.ws.terminate());
      raw.ws.send(`40${name},{"token":"x"}`);
      const reply = await raw.waitForMessage("CONNECT_ERROR", (m) => m.startsWith("44") || m.startsWith("40"));
      assert.ok(reply.startsWith("44"), `expected CONNECT_ERROR, got ${reply}`);
    });
  }

  await t.test("a served namespace still connects", async () => {
    const socket = await connect(`${gateway.url}/tenant`);
    socket.close();
  });

  await t.test("the gateway refuses to start with a bad name, naming the flag", () => {
    const bin = process.env.SOCKETFLEET_GATEWAY_BIN ||
      path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache/socketfleet/target"), "debug/socketfleet-gateway");
    for (const name of BAD_NAMES) {
      const result = spawnSync(bin, ["--namespace", name, "--port", "0", "--admin-port", "0"], { encoding: "utf8", timeout: 10000 });
      assert.notEqual(result.status, 0, `started with ${name}`);
      assert.match(result.stderr, /--namespace/);
    }
  });
});
