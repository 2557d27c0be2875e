// @ts-check
// The live widget's audio I/O: one AudioContext per view, the playback node and (once asked) the
// microphone's capture node, both AudioWorklet processors from `_worklet_js` (worklet.js with
// audio.js inlined, loaded from a Blob URL: a worklet cannot import modules, and JupyterLab serves
// no route for package files).

import { canChooseOutput, micConstraints } from "./devices.js";

/** @typedef {import("./types.js").Model} Model */

/**
 * Why the microphone cannot be used here, or null when it can.
 * @returns {string | null}
 */
export function captureProblem() {
  if (typeof window === "undefined") return "there is no browser window";
  if (!window.isSecureContext) {
    return (
      "this page is not a secure context: browsers only allow the microphone on https:// or " +
      "http://localhost, and this notebook is served over plain http from another address"
    );
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return (
      "this front end does not expose navigator.mediaDevices (VS Code notebook webviews, for " +
      "one, do not allow microphone access)"
    );
  }
  if (typeof AudioWorkletNode === "undefined") return "this browser has no AudioWorklet";
  return null;
}

/** Audio for one view: one AudioContext, a playback node and (once asked) a capture node. */
/** Longest wait for the mic lane's Worker to pass on its last chunks when the mic closes, ms. */
const LANE_END_MS = 1000;

export class AudioEngine {
  /**
   * @param {Model} model
   * @param {{onWorklet: (m: any) => void, view?: string}} hooks `view`: this view's id, named to the
   *   mic lane so the kernel orders its chunks with the ones this view sends over the comm
   */
  constructor(model, hooks) {
    this.model = model;
    this.hooks = hooks;
    /** @type {AudioContext | null} */ this.ctx = null;
    /** @type {Promise<AudioContext> | null} */ this._ready = null;
    /** @type {AudioWorkletNode | null} */ this.playNode = null;
    /** @type {AudioWorkletNode | null} */ this.capNode = null;
    /** @type {MediaStream | null} */ this.stream = null;
    /** @type {MediaStreamAudioSourceNode | null} */ this.source = null;
    /** @type {string | null} */ this._moduleUrl = null;
    this._token = 0;
    /** @type {Map<number, (items: any[]) => void>} */ this._flushes = new Map();
    /** @type {(() => void) | null} */ this._stopped = null;
    /** The next mic chunk's sequence number (the worklet numbers them, from here on start). */
    this.micSeq = 0;
    /** @type {Worker | null} the mic lane (lane.js), while the mic is open and a lane is offered */
    this.lane = null;
    /** @type {string | null} */ this._laneUrl = null;
    /** @type {(() => void) | null} resolves _endLane() once the Worker has handled every chunk */
    this._laneEnded = null;
  }

  /** @returns {Promise<AudioContext>} */
  context() {
    if (!this._ready) this._ready = this._init();
    return this._ready;
  }

  async _init() {
    const ctx = new AudioContext({ latencyHint: "interactive" });
    this.ctx = ctx;
    if (!ctx.audioWorklet) {
      throw new Error(
        typeof window !== "undefined" && !window.isSecureContext
          ? "AudioWorklet, like the microphone, needs a secure context (https:// or http://localhost)"
          : "this browser has no AudioWorklet",
      );
    }
    this._moduleUrl = URL.createObjectURL(new Blob([this.model.get("_worklet_js")], { type: "text/javascript" }));
    await ctx.audioWorklet.addModule(this._moduleUrl);
    const play = new AudioWorkletNode(ctx, "rtnb-playback", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: {
        outputRate: this.model.get("output_rate"),
        prebufferMs: this.model.get("prebuffer_ms"),
      },
    });
    play.port.onmessage = (e) => this._fromWorklet(e.data);
    play.connect(ctx.destination);
    this.playNode = play;
    return ctx;
  }

  /** @param {any} m */
  _fromWorklet(m) {
    if (m.type === "flushed") {
      const done = this._flushes.get(m.token);
      this._flushes.delete(m.token);
      if (done) done(m.items);
    } else if (m.type === "stopped") {
      if (typeof m.seq === "number") this.micSeq = Math.max(this.micSeq, m.seq);
      const done = this._stopped;
      this._stopped = null;
      if (done) done();
    } else {
      if (m.type === "chunk" && typeof m.seq === "number") this.micSeq = Math.max(this.micSeq, m.seq + 1);
      this.hooks.onWorklet(m);
    }
  }

  /**
   * Start the mic lane for the capture node: a Worker that takes its chunks on a port of their
   * own and sends them to the kernel off the main thread (see lane.js). Nothing happens when the
   * kernel offers no lane or the page cannot run a Worker: chunks then come here, as before.
   * @param {AudioWorkletNode} cap
   */
  _startLane(cap) {
    const url = this.model.get("mic_lane");
    const src = (this.model.get("_modules") || {})["lane.js"];
    if (!url || !src || typeof Worker === "undefined" || typeof MessageChannel === "undefined") return;
    try {
      this._laneUrl = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
      const worker = new Worker(this._laneUrl, { type: "module", name: "realtime_nb mic lane" });
      const channel = new MessageChannel();
      worker.onmessage = (e) => this._fromLane(e.data);
      worker.onerror = (e) => this._fromLane({ type: "lane", state: "down", reason: `worker: ${e.message}` });
      worker.postMessage({ cmd: "connect", url, view: this.hooks.view || "", port: channel.port2 }, [channel.port2]);
      cap.port.postMessage({ cmd: "lane", port: channel.port1 }, [channel.port1]);
      this.lane = worker;
    } catch (err) {
      this._stopLane();
      this.hooks.onWorklet({ type: "lane", state: "down", reason: String(err) });
    }
  }

  /** @param {any} m a message from the lane's Worker */
  _fromLane(m) {
    if (m && m.type === "lane" && m.state === "ended") {
      const done = this._laneEnded;
      this._laneEnded = null;
      this._stopLane();
      if (done) done();
      return;
    }
    if (m && m.type === "lane" && m.state === "down") {
      // Chunks already on their way to the Worker come back here; new ones come straight. The
      // Worker closes once the worklet's "end" says it has them all.
      if (this.capNode) this.capNode.port.postMessage({ cmd: "lane", port: null });
      else this._stopLane();
    }
    this._fromWorklet(m);
  }

  /**
   * Take the capture node off the lane and close the Worker once it has passed on every chunk
   * (at most LANE_END_MS: a Worker that stopped answering loses nothing more by waiting).
   * @returns {Promise<void>}
   */
  _endLane() {
    if (!this.lane) return Promise.resolve();
    if (!this.capNode) {
      this._stopLane();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this._laneEnded = null;
        this._stopLane();
        resolve(undefined);
      }, LANE_END_MS);
      this._laneEnded = () => {
        clearTimeout(timer);
        resolve(undefined);
      };
      this.capNode?.port.postMessage({ cmd: "lane", port: null });
    });
  }

  _stopLane() {
    if (this.lane) {
      this.lane.postMessage({ cmd: "close" });
      this.lane = null;
    }
    if (this._laneUrl) URL.revokeObjectURL(this._laneUrl);
    this._laneUrl = null;
  }

  /** Send silence instead of the mic (the meter still shows the mic). @param {boolean} value */
  setMuted(value) {
    if (this.capNode) this.capNode.port.postMessage({ cmd: "muted", value });
  }

  /** Resume after a user gesture (autoplay policy); harmless when running. */
  async resume() {
    const ctx = await this.context();
    if (ctx.state === "suspended") await ctx.resume();
  }

  get suspended() {
    return !this.ctx || this.ctx.state !== "running";
  }

  /** Output latency in ms: audio rendered but not yet out of the speaker. */
  outputLatencyMs() {
    const c = /** @type {any} */ (this.ctx);
    if (!c) return 0;
    return 1000 * ((c.baseLatency || 0) + (c.outputLatency || 0));
  }

  /**
   * Open the microphone (once) and connect it to the capture processor, gate closed.
   * @param {Record<string, boolean>} options echoCancellation, noiseSuppression, autoGainControl
   * @param {string} [deviceId] the microphone ("" for the system default)
   */
  async openMic(options, deviceId = "") {
    const ctx = await this.context();
    await this.resume();
    if (this.stream) return;
    const stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraints(options, deviceId) });
    this.stream = stream;
    this.source = ctx.createMediaStreamSource(stream);
    const cap = new AudioWorkletNode(ctx, "rtnb-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: {
        inputRate: this.model.get("input_rate"),
        chunkMs: this.model.get("chunk_ms"),
      },
    });
    cap.port.onmessage = (e) => this._fromWorklet(e.data);
    // Chrome only runs a node that leads to the destination: route it through a muted gain.
    const sink = ctx.createGain();
    sink.gain.value = 0;
    this.source.connect(cap);
    cap.connect(sink);
    sink.connect(ctx.destination);
    this.capNode = cap;
    this.setMuted(!!this.model.get("muted"));
    this._startLane(cap);
  }

  /** @param {Record<string, boolean>} options */
  async applyMicOptions(options) {
    const track = this.stream && this.stream.getAudioTracks()[0];
    if (track) await track.applyConstraints({ channelCount: 1, ...options });
  }

  /**
   * Move an open microphone to another device: the new stream replaces the old one at the
   * capture node's input, so the gate, the chunk sequence and a push-to-talk press go on
   * unbroken. If the new device cannot be opened the old one stays.
   * @param {string} deviceId "" for the system default
   * @param {Record<string, boolean>} options
   * @returns {Promise<boolean>} false when no microphone is open (the next openMic uses it)
   */
  async switchMic(deviceId, options) {
    const ctx = this.ctx;
    if (!this.stream || !this.capNode || !ctx) return false;
    const stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraints(options, deviceId) });
    const source = ctx.createMediaStreamSource(stream);
    const old = { stream: this.stream, source: this.source };
    source.connect(this.capNode);
    old.source?.disconnect();
    for (const t of old.stream.getTracks()) t.stop();
    this.stream = stream;
    this.source = source;
    return true;
  }

  /**
   * Play on another output device.
   * @param {string} sinkId "" for the system default
   * @throws {Error} the browser cannot choose the output (no AudioContext.setSinkId), or refused
   */
  async setOutput(sinkId) {
    const ctx = await this.context();
    if (!canChooseOutput(ctx)) throw new Error("this browser cannot choose the output device");
    await /** @type {any} */ (ctx).setSinkId(sinkId);
  }

  startCapture() {
    if (this.capNode) this.capNode.port.postMessage({ cmd: "start", seq: this.micSeq });
  }

  /** Close the gate; resolves once the last (partial) chunk has been posted. */
  stopCapture() {
    const cap = this.capNode;
    if (!cap) return Promise.resolve();
    return new Promise((resolve) => {
      this._stopped = () => resolve(undefined);
      cap.port.postMessage({ cmd: "stop" });
    });
  }

  async closeMic() {
    await this.stopCapture();
    await this._endLane();
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    if (this.source) this.source.disconnect();
    if (this.capNode) this.capNode.disconnect();
    this.stream = null;
    this.source = null;
    this.capNode = null;
  }

  /** @param {string} itemId @param {DataView} data PCM16 LE at the output rate */
  async push(itemId, data) {
    await this.context();
    const copy = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
    this.playNode?.port.postMessage({ cmd: "push", itemId, pcm: copy }, [copy]);
  }

  /** @param {string} itemId */
  async end(itemId) {
    await this.context();
    this.playNode?.port.postMessage({ cmd: "end", itemId });
  }

  /**
   * Stop playback at once.
   * @returns {Promise<{itemId: string, playedMs: number, queuedMs: number, started: boolean}[]>}
   */
  async flush() {
    if (!this.playNode) return [];
    const token = ++this._token;
    const node = this.playNode;
    return new Promise((resolve) => {
      this._flushes.set(token, resolve);
      node.port.postMessage({ cmd: "flush", token });
    });
  }

  async destroy() {
    try {
      await this.closeMic();
    } catch (_) {
      /* already gone */
    }
    if (this.ctx) await this.ctx.close().catch(() => {});
    if (this._moduleUrl) URL.revokeObjectURL(this._moduleUrl);
  }
}
