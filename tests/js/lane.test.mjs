// The mic lane's Worker logic (lane.js) with a scripted WebSocket, clock and timers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CONNECT_ATTEMPTS, HEADER_BYTES, Lane, RESEND_CHUNKS, encodeChunk } from "../../realtime_nb/widget/lane.js";

test("a chunk on the lane: seq, send and post times, then the PCM", () => {
  const pcm = new Int16Array([1, -2, 32767]).buffer;
  const msg = encodeChunk(42, 1700000000123.5, 1700000000120.25, pcm);
  const dv = new DataView(msg);
  assert.equal(msg.byteLength, HEADER_BYTES + 6);
  assert.equal(dv.getUint32(0, true), 42);
  assert.equal(dv.getUint32(4, true), 0);
  assert.equal(dv.getFloat64(8, true), 1700000000123.5);
  assert.equal(dv.getFloat64(16, true), 1700000000120.25);
  assert.deepEqual([...new Int16Array(msg, HEADER_BYTES)], [1, -2, 32767]);
});

function harness() {
  const sockets = [];
  const timers = [];
  const main = [];
  const lane = new Lane({
    url: "ws://127.0.0.1:1/mic/x",
    view: "v1",
    connect(url) {
      const ws = { url, sent: [], readyState: 0, closed: false,
        send(m) { this.sent.push(m); }, close() { this.closed = true; } };
      sockets.push(ws);
      return ws;
    },
    now: () => 1000,
    later: (fn, ms) => timers.push({ fn, ms }),
    toMain: (m) => main.push(m),
  });
  const open = (ws) => {
    ws.readyState = 1;
    ws.onopen();
    ws.onmessage({ data: JSON.stringify({ type: "ready", lane: "x" }) });
  };
  const chunk = (seq) => ({ type: "chunk", seq, at: 990, pcm: new Int16Array([seq]).buffer, rms: 0 });
  return { lane, sockets, timers, main, open, chunk };
}

test("chunks go back to the main thread until the kernel says ready, then on the socket", () => {
  const h = harness();
  h.lane.start();
  const ws = h.sockets[0];
  h.lane.chunk(h.chunk(0));
  assert.deepEqual(h.main.map((m) => m.seq), [0], "relayed while connecting");
  h.open(ws);
  assert.deepEqual(JSON.parse(ws.sent[0]), { view: "v1" });
  assert.equal(h.main.at(-1).state, "open");
  h.lane.chunk(h.chunk(1));
  assert.equal(ws.sent.length, 2);
  assert.equal(new DataView(ws.sent[1]).getUint32(0, true), 1);
  assert.equal(new DataView(ws.sent[1]).getFloat64(8, true), 1000);
  assert.equal(h.lane.sent, 1);
});

test("refused connections are retried, then the lane is down and every chunk is relayed", () => {
  const h = harness();
  h.lane.start();
  for (let i = 0; i < CONNECT_ATTEMPTS; i++) {
    h.sockets[i].onclose({ code: 1006 });
    if (i < CONNECT_ATTEMPTS - 1) h.timers.at(-1).fn(); // the retry
  }
  assert.equal(h.sockets.length, CONNECT_ATTEMPTS);
  const down = h.main.filter((m) => m.type === "lane");
  assert.deepEqual(down.map((m) => m.state), ["down"]);
  assert.equal(down[0].reason, "could not connect");
  h.lane.chunk(h.chunk(5));
  assert.equal(h.main.at(-1).seq, 5);
});

test("an open lane that closes is down at once (no retry), and an impostor on the port is refused", () => {
  const h = harness();
  h.lane.start();
  h.open(h.sockets[0]);
  h.sockets[0].onclose({ code: 1001, reason: "going away" });
  assert.equal(h.lane.state, "down");
  assert.equal(h.sockets.length, 1);
  assert.match(h.main.at(-1).reason, /closed \(1001 going away\)/);

  const g = harness();
  g.lane.start();
  g.sockets[0].readyState = 1;
  g.sockets[0].onmessage({ data: "HTTP/1.1 200 OK" });
  assert.ok(g.sockets[0].closed, "something else on that port: never sent audio");
  assert.equal(g.lane.state, "connecting"); // tries again, then gives up
});

test("no answer in time counts as a failed attempt", () => {
  const h = harness();
  h.lane.start();
  h.timers[0].fn(); // the ready timeout
  assert.ok(h.sockets[0].closed);
  assert.equal(h.lane.state, "connecting");
});

test("an open lane that closes sends its last chunks again, marked, before saying it is down", () => {
  const h = harness();
  h.lane.start();
  h.open(h.sockets[0]);
  const before = h.main.length;
  for (let seq = 0; seq < RESEND_CHUNKS + 5; seq++) h.lane.chunk(h.chunk(seq));
  assert.equal(h.main.length, before, "all on the socket");
  h.sockets[0].onclose({ code: 1006, reason: "" });
  const back = h.main.slice(before);
  // The newest RESEND_CHUNKS, oldest first (any of them may have been in flight), then "down".
  assert.deepEqual(
    back.slice(0, -1).map((m) => [m.seq, m.resend, m.type]),
    Array.from({ length: RESEND_CHUNKS }, (_, k) => [k + 5, true, "chunk"]),
  );
  assert.equal(back.at(-1).state, "down");
  // Later chunks go back to the main thread as new ones.
  h.lane.chunk(h.chunk(RESEND_CHUNKS + 5));
  assert.equal(h.main.at(-1).seq, RESEND_CHUNKS + 5);
  assert.equal(h.main.at(-1).resend, undefined);
});

test("a lane that never opened has nothing to send again", () => {
  const h = harness();
  h.lane.start();
  h.lane.chunk(h.chunk(0)); // relayed at once
  for (let k = 0; k < CONNECT_ATTEMPTS; k++) {
    h.sockets[k].onclose({ code: 1006 });
    if (k < CONNECT_ATTEMPTS - 1) h.timers.at(-1).fn();
  }
  assert.equal(h.lane.state, "down");
  assert.ok(!h.main.some((m) => m.resend));
});
