// A websocket probe that closes before the client sends the upgrade packet must not end the
// long-polling session it tried to take over. engine.io-client stays on long-polling when its
// probe fails, for example behind a proxy that breaks websockets after the handshake.
"use strict";

const net = require("node:net");
const test = require("node:test");
const assert = require("node:assert/strict");
const WebSocket = require("ws");
const { io } = require("socket.io-client");
const { nextEvent, request, startGateway, within } = require("./helpers");

async function http(method, url, body) {
  const res = await fetch(url, { method, body });
  return { status: res.status, text: await res.text() };
}

/** Opens a long-polling session, connects it to `/` and returns its sid and polling URL. */
async function pollingSession(gateway) {
  const base = `${gateway.url}/socket.io/?EIO=4&transport=polling`;
  const open = await http("GET", base);
  assert.equal(open.status, 200, open.text);
  const { sid } = JSON.parse(open.text.slice(1));
  const url = `${base}&sid=${sid}`;
  assert.equal((await http("POST", url, "40")).text, "ok");
  assert.match((await within("CONNECT reply", http("GET", url))).text, /^40\{"sid"/);
  return { sid, url };
}

/** Opens a websocket that names session `sid` and resolves once it is open. */
async function probeSocket(gateway, sid) {
  const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
  ws.on("error", () => {});
  await within("probe websocket open", new Promise((resolve) => ws.once("open", resolve)));
  return ws;
}

/**
 * Starts a TCP proxy to `port` that passes HTTP through but drops a websocket connection as soon
 * as the client sends its first frame after the handshake, as some proxies do.
 */
function websocketBreakingProxy(port) {
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    let upgrading = false;
    client.on("data", (chunk) => {
      if (upgrading) {
        client.destroy();
        upstream.destroy();
        return;
      }
      if (/upgrade:\s*websocket/i.test(chunk.toString("latin1"))) upgrading = true;
      upstream.write(chunk);
    });
    upstream.pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

test("a failed websocket probe leaves the long-polling session in place", async (t) => {
  const gateway = await startGateway(["--transport", "websocket,polling"]);
  t.after(() => gateway.stop());

  await t.test("a probe closed after 3probe", async () => {
    const { sid, url } = await pollingSession(gateway);
    const waiting = http("GET", url);
    const ws = await probeSocket(gateway, sid);
    ws.send("2probe");
    await within("3probe", new Promise((resolve) => ws.once("message", resolve)));
    assert.equal((await within("the waiting GET's noop", waiting)).text, "6");
    ws.close();
    await within("probe websocket close", new Promise((resolve) => ws.once("close", resolve)));

    const post = await http("POST", url, '421["join",{"room":"after-probe"}]');
    assert.equal(post.status, 200, `POST after the failed probe answered ${post.status} ${post.text}`);
    const get = await within("GET after the failed probe", http("GET", url));
    assert.equal(get.text, '431[{"ok":true}]');
  });

  await t.test("a probe closed before it sent anything", async () => {
    const { sid, url } = await pollingSession(gateway);
    const ws = await probeSocket(gateway, sid);
    ws.close();
    await within("probe websocket close", new Promise((resolve) => ws.once("close", resolve)));

    const post = await http("POST", url, '421["join",{"room":"no-probe"}]');
    assert.equal(post.status, 200, `POST after the failed probe answered ${post.status} ${post.text}`);
    assert.equal((await within("GET after the failed probe", http("GET", url))).text, '431[{"ok":true}]');
  });

  await t.test("socket.io-client behind a proxy that breaks websockets stays on long-polling", async (st) => {
    const proxy = await websocketBreakingProxy(gateway.port);
    st.after(() => proxy.close());
    const url = `http://127.0.0.1:${proxy.address().port}`;
    const socket = io(url, { transports: ["polling", "websocket"], reconnection: false, forceNew: true });
    st.after(() => socket.close());
    const upgradeFailed = new Promise((resolve) =>
      socket.io.once("open", () => socket.io.engine.once("upgradeError", resolve)),
    );
    await within("connect through the proxy", new Promise((resolve) => socket.once("connect", resolve)));
    let reason = null;
    socket.on("disconnect", (r) => (reason = r));
    await within("the client's failed upgrade", upgradeFailed);
    assert.deepEqual(await request(socket, "join", { room: "behind-proxy" }), { ok: true });
    const received = nextEvent(socket, "news");
    await request(socket, "publish", { room: "behind-proxy", event: "news", data: 1 });
    assert.deepEqual(await received, [1]);
    assert.equal(reason, null, `the client disconnected: ${reason}`);
    assert.equal(socket.io.engine.transport.name, "polling");
  });
});
