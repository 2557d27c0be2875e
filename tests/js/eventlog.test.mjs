// The live event log's grouping and trimming (realtime_nb/widget/eventlog.js). `node --test tests/js/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { COLLAPSIBLE, EventLog, detailText, matches } from "../../realtime_nb/widget/eventlog.js";

let seq = 0;
/** @param {string} type @param {string} [source] */
const ev = (type, source = "server") => ({
  seq: ++seq, t_ms: seq * 10, source, type, item_id: null, response_id: null, data: { type, n: seq },
});

test("consecutive streaming events of one source collapse into one group", () => {
  const log = new EventLog();
  const c = log.add([
    ev("response.created"),
    ev("response.output_audio.delta"),
    ev("response.output_audio.delta"),
    ev("response.output_audio.delta"),
    ev("input_audio_buffer.append", "client"),
    ev("input_audio_buffer.append", "client"),
    ev("response.output_audio.delta"),
  ]);
  assert.deepEqual(log.groups.map((g) => [g.type, g.events.length]), [
    ["response.created", 1],
    ["response.output_audio.delta", 3],
    ["input_audio_buffer.append", 2],
    ["response.output_audio.delta", 1],
  ]);
  assert.equal(log.total, 7);
  assert.equal(c.added.length, 4);
  assert.deepEqual(c.updated, []); // groups new in this batch are "added", not also "updated"
  assert.deepEqual(c.removed, []);
});

test("other types never collapse, nor the same type from another source", () => {
  const log = new EventLog();
  log.add([ev("session.updated"), ev("session.updated")]);
  log.add([ev("response.text.delta", "server"), ev("response.text.delta", "local")]);
  assert.equal(log.groups.length, 4);
  assert.ok(COLLAPSIBLE.test("response.output_audio_transcript.delta"));
  assert.ok(!COLLAPSIBLE.test("response.output_audio.done"));
});

test("a run continued by the next batch is reported as updated", () => {
  const log = new EventLog();
  log.add([ev("response.output_audio.delta")]);
  const c = log.add([ev("response.output_audio.delta"), ev("response.output_audio.delta")]);
  assert.deepEqual(c.added, []);
  assert.equal(c.updated.length, 1);
  assert.equal(c.updated[0].events.length, 3);
});

test("the log keeps at most max events, dropping whole groups from the oldest", () => {
  const log = new EventLog(5);
  const first = log.add([ev("a"), ev("b"), ev("c")]);
  const c = log.add([ev("x.delta"), ev("x.delta"), ev("x.delta")]);
  assert.equal(log.total, 5); // 6 > 5: the oldest group goes
  assert.deepEqual(c.removed, first.added.slice(0, 1));
  assert.deepEqual(log.groups.map((g) => g.type), ["b", "c", "x.delta"]);
  // The last group always stays, even if it alone is over the limit.
  const d = log.add(Array.from({ length: 8 }, () => ev("x.delta")));
  assert.deepEqual(log.groups.map((g) => [g.type, g.events.length]), [["x.delta", 11]]);
  assert.deepEqual(d.removed.map((g) => g.type), ["b", "c"]);
  assert.equal(log.total, 11);
});

test("a group that comes and goes in one batch is never reported", () => {
  const log = new EventLog(2);
  const c = log.add([ev("a"), ev("b"), ev("c"), ev("d")]);
  assert.deepEqual(c.added.map((g) => g.type), ["c", "d"]);
  assert.deepEqual(c.removed, []);
});

test("clear returns every group and empties the log", () => {
  const log = new EventLog();
  log.add([ev("a"), ev("b")]);
  const gone = log.clear();
  assert.equal(gone.length, 2);
  assert.equal(log.total, 0);
  assert.deepEqual(log.groups, []);
});

test("filters and detail text", () => {
  const g = { key: "server response.created", source: "server", type: "response.created", events: [ev("response.created")] };
  assert.ok(matches(g, "", ""));
  assert.ok(matches(g, " RESPONSE. ", "server"));
  assert.ok(!matches(g, "session", ""));
  assert.ok(!matches(g, "", "client"));
  const one = detailText(g);
  assert.match(one, /^\/\/ seq \d+, t \d+ ms\n\{/);
  const run = { ...g, events: [ev("x.delta"), ev("x.delta")] };
  const [a, b] = run.events;
  assert.ok(detailText(run).startsWith(`// 2 events, seq ${a.seq}–${b.seq}; the last one:\n`));
  assert.deepEqual(JSON.parse(detailText(run).split("\n").slice(1).join("\n")), b.data);
});
