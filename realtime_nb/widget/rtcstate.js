// @ts-check
// The WebRTC transport's pure logic (webrtc.js does the I/O; node --test covers this): why WebRTC
// cannot work on a page, when the chunks a tap produced started, where speech starts in them, and
// what the data channel's events mean for the view (playing, interrupted).

/** What the widget offers instead, in words the user can act on. */
export const RELAY_HINT =
  'Use the relay instead: Session(..., transport="websocket") or %realtime --transport websocket ' +
  "(the kernel relays the audio over the notebook's connection).";

/**
 * Why WebRTC cannot work in this environment, or null when it can.
 * @param {{isSecureContext?: boolean, RTCPeerConnection?: unknown,
 *   navigator?: {mediaDevices?: {getUserMedia?: unknown}}, AudioWorkletNode?: unknown}} g
 *   the global object (window), or a stand-in
 * @returns {string | null}
 */
export function webrtcProblem(g) {
  if (!g) return "there is no browser window";
  if (!g.isSecureContext) {
    return (
      "this page is not a secure context: browsers only allow the microphone and WebRTC audio on " +
      "https:// or http://localhost, and this notebook is served over plain http from another address"
    );
  }
  if (typeof g.RTCPeerConnection !== "function") {
    return "this front end has no RTCPeerConnection (VS Code notebook webviews, for one, do not offer WebRTC)";
  }
  const md = g.navigator && g.navigator.mediaDevices;
  if (!md || typeof md.getUserMedia !== "function") {
    return "this front end does not expose navigator.mediaDevices (no microphone access)";
  }
  if (typeof g.AudioWorkletNode !== "function") return "this browser has no AudioWorklet";
  return null;
}

/**
 * Why a peer connection state means the call is lost, or null when it does not.
 * @param {string} state RTCPeerConnection.connectionState or iceConnectionState
 * @returns {string | null}
 */
export function connectionProblem(state) {
  if (state === "failed") {
    return (
      "the WebRTC connection failed (no network path for its UDP media: a firewall or proxy " +
      "that blocks UDP, or a server the browser cannot reach)"
    );
  }
  if (state === "closed") return "the WebRTC connection was closed";
  return null;
}

/**
 * The page time (ms) of a tapped chunk's first sample. The worklet stamps a chunk when it posts
 * it, right after its last sample went through; that sample is `samples / rate` after the first.
 * Played audio leaves the speaker `outputLatencyMs` later than the worklet sees it.
 * @param {number} postedMs the worklet's Date.now() at post
 * @param {number} samples samples in the chunk
 * @param {number} rate the chunk's sample rate
 * @param {number} [outputLatencyMs] for the remote track as played
 * @returns {number}
 */
export function chunkStartMs(postedMs, samples, rate, outputLatencyMs = 0) {
  return postedMs - (1000 * samples) / rate + outputLatencyMs;
}

/** Chunks over which ChunkClock takes its lower envelope: 2 s of 50 ms chunks. */
export const CLOCK_WINDOW_CHUNKS = 40;

/**
 * Page times of a tap's chunks, from the sample count rather than from each post time alone.
 *
 * The worklet stamps a chunk when it posts it, but the audio thread runs its render quanta in
 * bursts, late by a scheduling delay that varies from chunk to chunk (tens of ms; hundreds on a
 * loaded machine). The samples themselves are contiguous, so a chunk starts `samples/rate`
 * after the one before; each post time only bounds that from above (a chunk can be posted late,
 * never before its samples exist). So the start of the stream is the lowest start any chunk of
 * the last CLOCK_WINDOW_CHUNKS implies, and a chunk's time is that plus the samples before it:
 * jitter goes, and a real break in the stream (samples lost in a stall) moves the start later
 * once its chunks fill the window.
 */
export class ChunkClock {
  /** @param {number} rate @param {number} [windowChunks] */
  constructor(rate, windowChunks = CLOCK_WINDOW_CHUNKS) {
    this.rate = rate;
    this.windowChunks = windowChunks;
    /** samples before the next chunk */
    this.samples = 0;
    /** @type {number[]} the stream start each recent chunk implies (ms) */
    this.starts = [];
  }

  /**
   * @param {number} postedMs the worklet's Date.now() when it posted the chunk
   * @param {number} samples the chunk's samples
   * @returns {number} page ms of the chunk's first sample
   */
  stamp(postedMs, samples) {
    const before = (1000 * this.samples) / this.rate;
    this.starts.push(chunkStartMs(postedMs, samples, this.rate) - before);
    if (this.starts.length > this.windowChunks) this.starts.shift();
    this.samples += samples;
    return Math.min(...this.starts) + before;
  }
}

/** Silence, as the onset detector sees it: below -40 dBFS (the fake mic's pauses are digital zero, speech peaks above -20). */
export const ONSET_LEVEL = 0.01;
/** Quiet time that must come before an onset, so one word's syllables count as one onset. */
export const ONSET_GAP_MS = 300;

/**
 * Finds where sound starts after silence in a stream of PCM16 chunks: the first sample above
 * ONSET_LEVEL after at least ONSET_GAP_MS below it. The page reports these times so that a test
 * can check where the recording placed the same audio.
 */
export class OnsetDetector {
  /** @param {number} rate */
  constructor(rate) {
    this.rate = rate;
    /** page ms of the last loud sample (-Infinity: none yet) */
    this.lastLoudMs = -Infinity;
    /** @type {number[]} page ms of each onset */
    this.onsets = [];
  }

  /**
   * @param {Int16Array} pcm
   * @param {number} t0 page ms of its first sample
   * @returns {number | null} the onset found in this chunk, if any
   */
  push(pcm, t0) {
    const limit = ONSET_LEVEL * 32768;
    let found = null;
    for (let i = 0; i < pcm.length; i++) {
      if (Math.abs(pcm[i]) <= limit) continue;
      const t = t0 + (1000 * i) / this.rate;
      if (found === null && t - this.lastLoudMs >= ONSET_GAP_MS) {
        found = t;
        this.onsets.push(t);
      }
      this.lastLoudMs = t;
    }
    return found;
  }
}

/**
 * What a server event seen on the data channel means for the view.
 * @param {any} ev
 * @returns {{playing?: {responseId: string, itemId: string} | null, interrupted?: boolean} | null}
 */
export function viewChange(ev) {
  switch (ev && ev.type) {
    case "output_audio_buffer.started":
      return { playing: { responseId: String(ev.response_id || ""), itemId: String(ev.item_id || "") } };
    case "output_audio_buffer.stopped":
      return { playing: null };
    case "output_audio_buffer.cleared":
      return { playing: null, interrupted: true };
    default:
      return null;
  }
}

/**
 * Clock round trips: CLOCK_BURST of them CLOCK_BURST_GAP_MS apart when the call starts (the
 * shortest sets the offset: its error is at most half of it, and a busy page or kernel makes
 * most round trips long), then one every CLOCK_EVERY_MS, since a later, quieter moment may give
 * a shorter one. About 2 small messages a second: nothing next to the tracks' 40.
 */
export const CLOCK_BURST = 20;
export const CLOCK_BURST_GAP_MS = 100;
export const CLOCK_EVERY_MS = 1000;
