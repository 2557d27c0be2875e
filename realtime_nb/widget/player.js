// @ts-check
// The replay view's audio: windows of both tracks fetched from the kernel and cached, scheduled
// on one AudioContext so that they line up with the playhead clock (timeline.js does the
// arithmetic). replay.js moves the playhead; this plays what lies under it. At speeds other
// than 1x each window is time-stretched (stretch.js) so that voices keep their pitch.

import { browserStore, canChooseOutput, loadChoice } from "./devices.js";
import { stretch } from "./stretch.js";
import { MAX_CACHED_WINDOWS, PREFETCH_WINDOWS, scheduleWindow, windowIndex, windowsFor, windowsToEvict } from "./timeline.js";

/** @typedef {{user: Float32Array, assistant: Float32Array}} AudioWindow */
/** @typedef {"user" | "assistant"} Track */

export class ReplayPlayer {
  /**
   * @param {{rate: number, windowS: number, request: (k: number) => number}} options
   *   `request(k)` asks the kernel for window k and returns the request's number
   */
  constructor({ rate, windowS, request }) {
    this.rate = rate;
    this.windowS = windowS;
    this.request = request;
    this.duration = 0;
    /** @type {Map<number, AudioWindow>} */
    this.windows = new Map();
    /** @type {Map<number, number>} request number -> window index */
    this.pending = new Map();
    /** @type {AudioContext | null} */
    this.ctx = null;
    /** @type {{user: GainNode, assistant: GainNode} | null} */
    this.gains = null;
    this.tracks = { user: true, assistant: true };
    /** @type {Map<number, AudioBufferSourceNode[]>} window index -> its sources, started */
    this.scheduled = new Map();
    this.playing = false;
    this.speed = 1;
    /** @type {Map<number, AudioWindow>} window index -> its audio stretched for `speed` */
    this.stretched = new Map();
    /** timeline s at context time `startCtx` */
    this.origin = 0;
    this.startCtx = 0;
  }

  /** Ask for window k unless it is here, on its way, or past the end. @param {number} k */
  fetch(k) {
    if (this.windows.has(k) || [...this.pending.values()].includes(k)) return;
    if (k * this.windowS >= this.duration) return;
    this.pending.set(this.request(k), k);
  }

  /**
   * A window arrived (or a request failed: `data` undefined).
   * @param {number} req @param {AudioWindow} [data]
   * @returns {number | undefined} its index, when it was asked for and arrived
   */
  received(req, data) {
    const k = this.pending.get(req);
    this.pending.delete(req);
    if (k === undefined || !data) return undefined;
    this.windows.set(k, data);
    return k;
  }

  /** Drop the windows farthest from the playhead past the cache's size. @param {number} position */
  evict(position) {
    const here = windowIndex(position, this.windowS);
    for (const k of windowsToEvict(this.windows.keys(), here, (w) => this.scheduled.has(w), MAX_CACHED_WINDOWS)) {
      this.windows.delete(k);
      this.stretched.delete(k);
    }
  }

  /** @returns {AudioContext} */
  context() {
    if (this.ctx) return this.ctx;
    const ctx = new AudioContext({ latencyHint: "playback" });
    this.ctx = ctx;
    // The speakers chosen in the live widget, in this browser (an unplugged one: the default).
    const out = loadChoice(browserStore(), "audiooutput");
    if (out && out.id && canChooseOutput(ctx)) /** @type {any} */ (ctx).setSinkId(out.id).catch(() => {});
    this.gains = { user: ctx.createGain(), assistant: ctx.createGain() };
    this.gains.user.connect(ctx.destination);
    this.gains.assistant.connect(ctx.destination);
    this.setTracks(this.tracks);
    return ctx;
  }

  /** Which tracks are heard. @param {{user: boolean, assistant: boolean}} tracks */
  setTracks(tracks) {
    this.tracks = { ...tracks };
    if (!this.gains) return;
    this.gains.user.gain.value = tracks.user ? 1 : 0;
    this.gains.assistant.gain.value = tracks.assistant ? 1 : 0;
  }

  /** Play at another speed (call while paused). @param {number} speed */
  setSpeed(speed) {
    if (speed !== this.speed) this.stretched.clear();
    this.speed = speed;
  }

  /**
   * Window k as it sounds at the current speed (stretched once, then cached).
   * @param {number} k @param {AudioWindow} w
   * @returns {AudioWindow}
   */
  audioAtSpeed(k, w) {
    if (this.speed === 1) return w;
    const done = this.stretched.get(k);
    if (done) return done;
    const next = this.windows.get(k + 1);
    const s = {
      user: stretch(w.user, this.rate, this.speed, next ? next.user : null),
      assistant: stretch(w.assistant, this.rate, this.speed, next ? next.assistant : null),
    };
    this.stretched.set(k, s);
    return s;
  }

  /** Where the playhead is now, by the audio clock (`paused` when not playing). @param {number} paused */
  position(paused) {
    if (!this.playing || !this.ctx) return paused;
    return Math.min(this.duration, this.origin + (this.ctx.currentTime - this.startCtx) * this.speed);
  }

  /**
   * Stretch the windows the playhead starts in, before the clock starts: stretching takes tens of
   * milliseconds, and done after, the clock would already have run past their start.
   * @param {number} position
   */
  prepare(position) {
    if (this.speed === 1) return;
    for (const k of windowsFor(position, this.windowS, this.duration, 1)) {
      const w = this.windows.get(k);
      if (w) this.audioAtSpeed(k, w);
    }
  }

  /** Start the clock at `position` (after resuming the context). @param {number} position */
  start(position) {
    const c = this.context();
    this.prepare(position);
    this.playing = true;
    this.origin = position;
    this.startCtx = c.currentTime + 0.05;
    this.schedule(position);
  }

  /** Move the clock to `position` while playing (a seek). @param {number} position */
  restart(position) {
    this.stopSources();
    this.prepare(position);
    this.origin = position;
    this.startCtx = (this.ctx ? this.ctx.currentTime : 0) + 0.05;
    this.schedule(position);
  }

  pause() {
    this.playing = false;
    this.stopSources();
  }

  stopSources() {
    for (const list of this.scheduled.values()) {
      for (const s of list) {
        try {
          s.stop();
        } catch (_) {
          /* not started yet or already ended */
        }
        s.disconnect();
      }
    }
    this.scheduled.clear();
  }

  /**
   * Fetch the windows the playhead needs soon; start the one under it and the next, once here.
   * @param {number} position
   */
  schedule(position) {
    if (!this.playing || !this.ctx || !this.gains) return;
    const c = this.ctx;
    const g = this.gains;
    const ks = windowsFor(position, this.windowS, this.duration, PREFETCH_WINDOWS);
    for (const k of ks) this.fetch(k);
    for (const k of ks.slice(0, 2)) {
      if (this.scheduled.has(k)) continue;
      const w = this.windows.get(k);
      if (!w) continue;
      const slot = scheduleWindow(k * this.windowS, w.user.length / this.rate, this.origin, this.startCtx, this.speed,
        c.currentTime + 0.01);
      if (!slot) continue;
      const sources = [];
      // Stretched, the buffer already lasts windowLen / speed: it plays at its own rate, from
      // the timeline offset scaled the same way.
      const a = this.audioAtSpeed(k, w);
      for (const [name, data] of /** @type {[Track, Float32Array][]} */ ([["user", a.user], ["assistant", a.assistant]])) {
        const buf = c.createBuffer(1, Math.max(1, data.length), this.rate);
        buf.copyToChannel(/** @type {Float32Array<ArrayBuffer>} */ (data), 0);
        const src = c.createBufferSource();
        src.buffer = buf;
        src.connect(g[name]);
        src.start(slot.when, slot.offset / this.speed);
        sources.push(src);
      }
      this.scheduled.set(k, sources);
    }
    // Windows behind the playhead are done.
    for (const k of [...this.scheduled.keys()]) {
      if ((k + 1) * this.windowS < position - 0.5) this.scheduled.delete(k);
    }
  }

  close() {
    this.stopSources();
    if (this.ctx) this.ctx.close().catch(() => {});
  }
}
