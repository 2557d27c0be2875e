// Pure helpers of the replay view (timeline.js, format.js, audio.js): window arithmetic,
// scheduling on the audio clock, the event-list window, PCM decoding. `node --test tests/js/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { bytesToPcm16, pcm16ToFloat } from "../../realtime_nb/widget/audio.js";
import { clock } from "../../realtime_nb/widget/format.js";
import {
  eventsCover,
  lastRowAt,
  scheduleWindow,
  timeAtX,
  windowIndex,
  windowsFor,
  windowsToEvict,
} from "../../realtime_nb/widget/timeline.js";

test("windowIndex and windowsFor cover the playhead and what follows, not past the end", () => {
  assert.equal(windowIndex(0, 4), 0);
  assert.equal(windowIndex(3.999, 4), 0);
  assert.equal(windowIndex(4, 4), 1);
  assert.equal(windowIndex(-1, 4), 0);
  assert.deepEqual(windowsFor(9, 4, 60, 2), [2, 3, 4]);
  assert.deepEqual(windowsFor(58, 4, 60, 2), [14]);
  assert.deepEqual(windowsFor(9, 4, 60, 0), [2]);
});

test("scheduleWindow lines a window up with the playhead clock", () => {
  // Playhead at 10 s at context time 100, 1x: the window starting at 8 s starts now, 2 s in.
  assert.deepEqual(scheduleWindow(8, 4, 10, 100, 1, 100), { when: 100, offset: 2 });
  // The next window (12 s) is due 2 s later.
  assert.deepEqual(scheduleWindow(12, 4, 10, 100, 1, 100), { when: 102, offset: 0 });
  // At 2x it is due 1 s later.
  assert.deepEqual(scheduleWindow(12, 4, 10, 100, 2, 100), { when: 101, offset: 0 });
  // Arriving late (context time 102.5 at 1x): start now, 0.5 s into the window.
  assert.deepEqual(scheduleWindow(12, 4, 10, 100, 1, 102.5), { when: 102.5, offset: 0.5 });
  // Already over.
  assert.equal(scheduleWindow(4, 4, 10, 100, 1, 100), null);
});

test("timeAtX, clock, lastRowAt", () => {
  assert.equal(timeAtX(50, 100, 3600), 1800);
  assert.equal(timeAtX(-5, 100, 3600), 0);
  assert.equal(timeAtX(500, 100, 3600), 3600);
  assert.equal(timeAtX(5, 0, 3600), 0);
  assert.equal(clock(0), "00:00.0");
  assert.equal(clock(83.44), "01:23.4");
  assert.equal(clock(3725.5), "1:02:05.5");
  const rows = [[1, 0.5], [2, 1.0], [3, 1.0], [4, 2.5]];
  assert.equal(lastRowAt(rows, 0.1), -1);
  assert.equal(lastRowAt(rows, 1.0), 2);
  assert.equal(lastRowAt(rows, 9), 3);
});

test("a comm buffer of PCM16 LE decodes to floats (as the replay view does)", () => {
  const buf = new ArrayBuffer(7);
  const dv = new DataView(buf, 1); // comm buffers may start at an odd offset
  dv.setInt16(0, 16384, true);
  dv.setInt16(2, -32768, true);
  dv.setInt16(4, 0, true);
  assert.deepEqual([...pcm16ToFloat(bytesToPcm16(dv))], [0.5, -1, 0]);
});

test("windowsToEvict drops the farthest windows first, never a scheduled one", () => {
  const cached = [0, 1, 2, 3, 4, 5];
  assert.deepEqual(windowsToEvict(cached, 2, () => false, 6), []);
  assert.deepEqual(windowsToEvict(cached, 2, () => false, 4), [5, 0]);
  assert.deepEqual(windowsToEvict(cached, 2, (k) => k === 5, 4), [0, 4]);
  assert.deepEqual(windowsToEvict(cached, 0, () => true, 2), []);
});

test("eventsCover keeps a margin inside the window, none at the recording's ends", () => {
  assert.equal(eventsCover(Infinity, -Infinity, 3, 60), false); // nothing fetched yet
  assert.equal(eventsCover(10, 50, 30, 60), true);
  assert.equal(eventsCover(10, 50, 12, 60), false); // within 5 s of the start edge
  assert.equal(eventsCover(10, 50, 47, 60), false);
  assert.equal(eventsCover(0, 60, 0, 60), true);
  assert.equal(eventsCover(0, 60, 60, 60), true);
});

test("layoutMarkers: labels in rows without overlap, by priority, the rest as bare ticks", async () => {
  const { layoutMarkers } = await import("../../realtime_nb/widget/timeline.js");
  /** @type {[number, string, string, string | null][]} */
  const markers = [
    [0.3, "user", "user 1", "u1"],
    [3.14, "response", "response 1", null],
    [3.58, "tool", "get_weather()", "c1"],
    [3.58, "response", "response 2", null],
    [3.67, "assistant", "assistant 1", "a1"],
    [9.5, "truncation", "✂ 1.20 s", "a1"],
  ];
  const places = layoutMarkers(markers, 800, 10, 3);
  assert.equal(places.length, markers.length);
  // The speakers and the tool call keep their labels; the second response, in the crowd, a tick.
  assert.deepEqual(places.map((p) => p.row), [0, 2, 1, -1, 0, 0]);
  assert.ok(Math.abs(places[0].x - 24) < 1e-9);
  // Near the right edge a label goes leftwards from its tick.
  assert.equal(places[5].flip, true);
  assert.equal(places[0].flip, false);
  // Labels that share a row never overlap.
  const boxes = places.map((p, i) => {
    const w = markers[i][2].length * 6.5 + 12;
    const start = p.flip ? p.x - w : p.x;
    return { row: p.row, start, end: start + w };
  });
  for (const a of boxes) {
    for (const b of boxes) {
      if (a !== b && a.row >= 0 && a.row === b.row) assert.ok(a.end <= b.start || b.end <= a.start);
    }
  }
  // A zero-length recording puts everything at 0 rather than dividing by zero.
  assert.deepEqual(layoutMarkers([[0, "user", "user 1", null]], 800, 0).map((p) => p.x), [0]);
});
