// A GET that waits for packets must get a response when its session ends, whatever ends it. Here
// a websocket naming the session closes, and the gateway ends the session with it.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const WebSocket = require("ws");
const { startGateway, within } = require("./helpers");

async function http(method, url, body, signal) {
  const res = await fetch(url, { method, body, signal });
  return { status: res.status, text: await res.text() };
}

test("a waiting poll is answered when a websocket naming its session closes", async (t) => {
  const gateway = await startGateway(["--transport", "websocket,polling"]);
  t.after(() => gateway.stop());
  const base = `${gateway.url}/socket.io/?EIO=4&transport=polling`;
  const { sid } = JSON.parse((await http("GET", base)).text.slice(1));
  const url = `${base}&sid=${sid}`;
  await http("POST", url, "40");
  assert.match((await within("CONNECT reply", http("GET", url))).text, /^40/);

  const abort = new AbortController();
  const waiting = http("GET", url, undefined, abort.signal);
  const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
  ws.on("error", () => {});
  await within("websocket open", new Promise((resolve) => ws.once("open", resolve)));
  ws.close();

  // Either the session lives on (the waiting GET stays open and a later POST works), or it ended
  // and the waiting GET returns a close packet. An ended session must not leave its GET open.
  const post = await http("POST", url, "6");
  if (post.status !== 200) {
    const answer = await within("the waiting GET's answer after its session ended", waiting);
    assert.equal(answer.text, "1");
  } else {
    abort.abort();
    await waiting.catch(() => {});
  }
});

test("a waiting poll is answered when a malformed POST ends its session", async (t) => {
  const gateway = await startGateway(["--transport", "websocket,polling"]);
  t.after(() => gateway.stop());
  const base = `${gateway.url}/socket.io/?EIO=4&transport=polling`;
  const { sid } = JSON.parse((await http("GET", base)).text.slice(1));
  const url = `${base}&sid=${sid}`;
  await http("POST", url, "40");
  assert.match((await within("CONNECT reply", http("GET", url))).text, /^40/);

  const waiting = http("GET", url);
  const post = await http("POST", url, "42[]");
  assert.equal(post.status, 400);
  const answer = await within("the waiting GET's answer after its session ended", waiting);
  assert.equal(answer.text, "1");
});
