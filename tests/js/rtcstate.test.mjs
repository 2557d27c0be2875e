// The WebRTC transport's pure logic (realtime_nb/widget/rtcstate.js). `node --test tests/js/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ONSET_GAP_MS,
  ChunkClock,
  OnsetDetector,
  RELAY_HINT,
  chunkStartMs,
  connectionProblem,
  viewChange,
  webrtcProblem,
} from "../../realtime_nb/widget/rtcstate.js";

const OK = {
  isSecureContext: true,
  RTCPeerConnection: function () {},
  navigator: { mediaDevices: { getUserMedia() {} } },
  AudioWorkletNode: function () {},
};

test("webrtcProblem: a capable page has none", () => {
  assert.equal(webrtcProblem(OK), null);
});

test("webrtcProblem: each missing piece is named", () => {
  assert.match(webrtcProblem({ ...OK, isSecureContext: false }) || "", /not a secure context/);
  assert.match(webrtcProblem({ ...OK, RTCPeerConnection: undefined }) || "", /no RTCPeerConnection/);
  assert.match(webrtcProblem({ ...OK, navigator: {} }) || "", /mediaDevices/);
  assert.match(webrtcProblem({ ...OK, AudioWorkletNode: undefined }) || "", /AudioWorklet/);
  // The secure-context reason wins: it is the one the user can act on first.
  assert.match(webrtcProblem({ isSecureContext: false }) || "", /secure context/);
});

test("the relay hint names both ways to get the relay", () => {
  assert.match(RELAY_HINT, /transport="websocket"/);
  assert.match(RELAY_HINT, /--transport websocket/);
});

test("connectionProblem: failed and closed are problems, the rest are not", () => {
  assert.match(connectionProblem("failed") || "", /UDP/);
  assert.match(connectionProblem("closed") || "", /closed/);
  for (const s of ["new", "connecting", "connected", "disconnected"]) assert.equal(connectionProblem(s), null);
});

test("chunkStartMs: the first sample is a chunk's length before the worklet posted it", () => {
  assert.equal(chunkStartMs(10_000, 1200, 24000), 9950);
  assert.equal(chunkStartMs(10_000, 1200, 24000, 12.5), 9962.5);
});

/** @param {number} n @param {number} v */
const chunk = (n, v) => new Int16Array(n).fill(v);

test("OnsetDetector: the first loud sample after a gap, to the sample", () => {
  const d = new OnsetDetector(24000);
  assert.equal(d.push(chunk(1200, 0), 0), null);
  const pcm = chunk(1200, 0);
  pcm.fill(5000, 240); // loud from sample 240: 10 ms into the chunk
  assert.equal(d.push(pcm, 50), 60);
  assert.deepEqual(d.onsets, [60]);
});

test("OnsetDetector: a short pause is not a new onset, a long one is", () => {
  const d = new OnsetDetector(24000);
  d.push(chunk(1200, 4000), 0); // loud 0..50 ms: onset at 0
  d.push(chunk(1200, 0), 50); // 50 ms quiet
  assert.equal(d.push(chunk(1200, 4000), 100), null);
  const quiet = Math.ceil((ONSET_GAP_MS * 24) / 1200) + 1;
  let t = 150;
  for (let i = 0; i < quiet; i++, t += 50) d.push(chunk(1200, 0), t);
  assert.equal(d.push(chunk(1200, -4000), t), t);
  assert.deepEqual(d.onsets, [0, t]);
});

test("OnsetDetector: quiet noise under the level is silence", () => {
  const d = new OnsetDetector(24000);
  assert.equal(d.push(chunk(2400, 300), 0), null); // -40.8 dBFS
  assert.deepEqual(d.onsets, []);
});

test("viewChange: output_audio_buffer events drive what the view shows", () => {
  assert.deepEqual(viewChange({ type: "output_audio_buffer.started", response_id: "resp_1" }), {
    playing: { responseId: "resp_1", itemId: "" },
  });
  assert.deepEqual(viewChange({ type: "output_audio_buffer.stopped", response_id: "resp_1" }), { playing: null });
  assert.deepEqual(viewChange({ type: "output_audio_buffer.cleared", response_id: "resp_1" }), {
    playing: null,
    interrupted: true,
  });
  assert.equal(viewChange({ type: "response.done" }), null);
  assert.equal(viewChange(null), null);
});

test("ChunkClock: late posts do not move a contiguous stream", () => {
  const c = new ChunkClock(24000, 4);
  // 50 ms chunks whose samples start at 1000 ms; posted 0, 30, 5, 12 ms late.
  const late = [0, 30, 5, 12];
  const got = late.map((d, k) => c.stamp(1000 + 50 * (k + 1) + d, 1200));
  assert.deepEqual(got, [1000, 1050, 1100, 1150]);
});

test("ChunkClock: the first chunks may all be late; an earlier post corrects them", () => {
  const c = new ChunkClock(24000, 4);
  assert.equal(c.stamp(1070, 1200), 1020); // 20 ms late: best guess so far
  assert.equal(c.stamp(1100, 1200), 1050); // on time: the stream started at 1000
});

test("ChunkClock: a real break (samples lost) is followed once the window forgets the old start", () => {
  const c = new ChunkClock(24000, 3);
  for (let k = 1; k <= 3; k++) c.stamp(1000 + 50 * k, 1200);
  // 200 ms of audio never arrived: the next chunks are posted 200 ms later than the count says.
  const after = [4, 5, 6, 7].map((k) => c.stamp(1200 + 50 * k, 1200));
  // Truly 1350, 1400, 1450, 1500: late by the break until the window has only chunks after it.
  assert.deepEqual(after, [1150, 1200, 1450, 1500]);
});
