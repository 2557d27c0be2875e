// One played report per cut (realtime_nb/widget/cuts.js). `node --test tests/js/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PlayedReports } from "../../realtime_nb/widget/cuts.js";

test("an item that plays to its end is reported once, as finished", () => {
  const r = new PlayedReports();
  r.started("a");
  assert.deepEqual(r.finished("a", 1234.56), { item_id: "a", played_ms: 1234.6, reason: "finished" });
  assert.equal(r.current, null);
  assert.ok(r.accepts("a"));
});

test("a flush cuts what plays and reports each item it dropped", () => {
  const r = new PlayedReports();
  r.started("a");
  r.cutting();
  assert.ok(!r.accepts("a")); // late audio of "a" is dropped from here on
  const out = r.cutDone([{ itemId: "a", playedMs: 800 }, { itemId: "b", playedMs: 0 }], "interrupted");
  assert.deepEqual(out, [
    { item_id: "a", played_ms: 800, reason: "interrupted" },
    { item_id: "b", played_ms: 0, reason: "interrupted" },
  ]);
  assert.ok(!r.accepts("b"));
  assert.equal(r.current, null);
});

test("a second cut of the same item (stop after an interruption) is not reported again", () => {
  const r = new PlayedReports();
  r.started("a");
  r.cutting();
  assert.equal(r.cutDone([{ itemId: "a", playedMs: 500 }], "interrupted").length, 1);
  r.cutting();
  assert.deepEqual(r.cutDone([{ itemId: "a", playedMs: 700 }], "stopped"), []);
  assert.equal(r.finished("a", 900), null); // nor its end
  assert.deepEqual(r.played.get("a"), { played_ms: 500, reason: "interrupted" });
});

test("a finished item may still be cut once (audio that came after its end)", () => {
  const r = new PlayedReports();
  r.finished("a", 1000);
  assert.deepEqual(r.cutDone([{ itemId: "a", playedMs: 1200 }], "stopped"), [
    { item_id: "a", played_ms: 1200, reason: "stopped" },
  ]);
  assert.deepEqual(r.cutDone([{ itemId: "a", playedMs: 1300 }], "stopped"), []);
});

test("a flush with nothing playing cuts nothing", () => {
  const r = new PlayedReports();
  r.cutting();
  assert.deepEqual(r.cutDone([], "stopped"), []);
  assert.ok(r.accepts("x"));
});

test("finishing an item that is not the current one leaves the current one", () => {
  const r = new PlayedReports();
  r.started("b");
  r.finished("a", 10);
  assert.equal(r.current, "b");
});
