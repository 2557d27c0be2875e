// @ts-check
// The live widget's WebRTC transport (RealtimeWidget.transport == "webrtc"): the page's own
// RTCPeerConnection carries the audio, the kernel holds every secret.
//
// The page opens the mic (the browser's echo cancellation, noise suppression and gain control),
// adds the `oai-events` data channel, and sends its SDP offer to the kernel, which posts it to the
// provider's calls endpoint with its key and answers with the SDP it got back (widget/_webrtc.py).
// The remote track plays through the view's AudioContext. Two taps (the capture processor of
// worklet.js, gate always open) turn the mic track and the remote track as played into 50 ms PCM16
// chunks at 24 kHz, sent to the kernel as binary buffers with the page time of their first
// sample; the kernel places them on the session timeline with a clock offset it measures from
// round trips this module starts (clock.ping -> clock.pong -> clock.sync). Every data-channel
// event goes to the kernel too, stamped with the page time it arrived.

import { micConstraints } from "./devices.js";
import {
  CLOCK_BURST,
  CLOCK_BURST_GAP_MS,
  CLOCK_EVERY_MS,
  ChunkClock,
  OnsetDetector,
  connectionProblem,
  viewChange,
} from "./rtcstate.js";

/** @typedef {import("./types.js").Model} Model */

/** Sample rate of the tapped tracks (the recording's audio columns are 24 kHz PCM16). */
const TAP_RATE = 24000;
/** Milliseconds per tapped chunk: 20 messages per second per track on the comm. */
const TAP_CHUNK_MS = 50;
/** Longest wait for ICE gathering: the calls endpoint takes one complete offer (no trickle); host candidates on loopback gather in milliseconds, a STUN-less page needs nothing more. */
const ICE_GATHER_MS = 3000;
/** Longest wait for the kernel's answer (it posts the offer and opens the sideband first). */
const ANSWER_MS = 20000;
/** Onsets kept per track for the page's report (data-rtc-onsets-*): a spoken reply has one every second or two, so this covers an hour's call in ~40 kB. */
const MAX_ONSETS = 2000;

const epochMs = () => performance.timeOrigin + performance.now();

/**
 * @typedef {{
 *   send: (msg: any, buffers?: (ArrayBuffer | ArrayBufferView)[]) => void,
 *   report: (level: string, message: string) => void,
 *   onEvent: (ev: any) => void,
 *   onProblem: (why: string) => void,
 *   onLevel: (rms: number) => void,
 *   onOnsets: (track: "input" | "output", onsets: number[]) => void,
 * }} LinkHooks
 */

export class WebRTCLink {
  /**
   * @param {Model} model
   * @param {{context(): Promise<AudioContext>, outputLatencyMs(): number}} engine the view's
   *   AudioEngine (its context has the worklet module loaded)
   * @param {LinkHooks} hooks
   */
  constructor(model, engine, hooks) {
    this.model = model;
    this.engine = engine;
    this.hooks = hooks;
    /** @type {RTCPeerConnection | null} */ this.pc = null;
    /** @type {RTCDataChannel | null} */ this.dc = null;
    /** @type {MediaStream | null} */ this.stream = null;
    /** @type {HTMLAudioElement | null} */ this.sink = null;
    /** @type {AudioNode[]} */ this.nodes = [];
    /** @type {{resolve: (sdp: string) => void, reject: (e: Error) => void} | null} */
    this._answer = null;
    /** @type {ReturnType<typeof setInterval> | null} */ this._clockTimer = null;
    this.onsets = { input: new OnsetDetector(TAP_RATE), output: new OnsetDetector(TAP_RATE) };
    /** "idle" | "connecting" | "connected" | "failed" | "closed" */
    this.state = "idle";
    this.closed = false;
  }

  /** The mic track (null before start). */
  get track() {
    return this.stream ? this.stream.getAudioTracks()[0] || null : null;
  }

  /**
   * Open the mic and the call. Throws (after saying why through onProblem) when it cannot.
   * @param {Record<string, boolean>} micOptions @param {string} deviceId
   */
  async start(micOptions, deviceId) {
    this.state = "connecting";
    this.startClock();
    const ctx = await this.engine.context();
    if (ctx.state === "suspended") await ctx.resume();
    // The browser's own processing: this is what WebRTC is for (echo cancellation included).
    const stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraints(micOptions, deviceId) });
    this.stream = stream;
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addEventListener("connectionstatechange", () => this._onState(pc.connectionState));
    pc.addEventListener("track", (e) => this._onRemote(e.streams[0] || new MediaStream([e.track])));
    for (const t of stream.getAudioTracks()) pc.addTrack(t, stream);
    const dc = pc.createDataChannel("oai-events");
    this.dc = dc;
    dc.addEventListener("message", (e) => this._onData(e.data));
    this._tap("input", ctx.createMediaStreamSource(stream), 0);

    await pc.setLocalDescription(await pc.createOffer());
    await this._gathered(pc);
    const offer = pc.localDescription ? pc.localDescription.sdp : "";
    const answer = await new Promise((resolve, reject) => {
      this._answer = { resolve, reject };
      this.hooks.send({ type: "webrtc.offer", sdp: offer });
      setTimeout(() => reject(new Error(`no answer from the kernel within ${ANSWER_MS / 1000} s`)), ANSWER_MS);
    });
    this._answer = null;
    await pc.setRemoteDescription({ type: "answer", sdp: String(answer) });
  }

  /** @param {RTCPeerConnection} pc */
  _gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === "complete") resolve(undefined);
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, ICE_GATHER_MS); // send what was gathered so far
    });
  }

  /** @param {string} state */
  _onState(state) {
    this.hooks.send({ type: "webrtc.state", state, reason: "" });
    if (state === "connected") this.state = "connected";
    const why = this.closed ? null : connectionProblem(state);
    if (why) {
      this.state = "failed";
      this.hooks.onProblem(why);
    }
  }

  /** The remote track: play it through the view's AudioContext and tap what is played. @param {MediaStream} remote */
  async _onRemote(remote) {
    // Chrome feeds a remote WebRTC stream to Web Audio only while a media element holds it too;
    // the element stays muted, the AudioContext plays it (and the output tap sees exactly that).
    const sink = new Audio();
    sink.muted = true;
    sink.srcObject = remote;
    sink.play().catch(() => {});
    this.sink = sink;
    const ctx = await this.engine.context();
    const src = ctx.createMediaStreamSource(remote);
    src.connect(ctx.destination);
    this.nodes.push(src);
    this._tap("output", src, this.engine.outputLatencyMs());
  }

  /**
   * A capture processor with its gate open on `source`: PCM16 chunks to the kernel.
   * @param {"input" | "output"} track @param {AudioNode} source @param {number} latencyMs
   */
  _tap(track, source, latencyMs) {
    const ctx = /** @type {BaseAudioContext} */ (source.context);
    const node = new AudioWorkletNode(ctx, "rtnb-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: { inputRate: TAP_RATE, chunkMs: TAP_CHUNK_MS },
    });
    const detector = this.onsets[track];
    const clock = new ChunkClock(TAP_RATE);
    node.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === "chunk") {
        const pcm = new Int16Array(m.pcm);
        const t0 = clock.stamp(m.at, pcm.length) + latencyMs;
        this.hooks.send({ type: "webrtc.track", track, t_page_ms: t0, rate: TAP_RATE }, [m.pcm]);
        if (detector.push(pcm, t0) !== null) this.hooks.onOnsets(track, detector.onsets.slice(-MAX_ONSETS));
        if (track === "input") this.hooks.onLevel(m.rms);
      } else if (m.type === "error") {
        this.hooks.report("error", m.message);
      }
    };
    // Chrome only runs a node that leads to the destination: route it through a muted gain.
    const mute = ctx.createGain();
    mute.gain.value = 0;
    source.connect(node);
    node.connect(mute);
    mute.connect(ctx.destination);
    node.port.postMessage({ cmd: "start" });
    this.nodes.push(node, mute);
  }

  /** @param {any} data a data-channel message */
  _onData(data) {
    const t = epochMs();
    let ev;
    try {
      ev = JSON.parse(String(data));
    } catch (err) {
      this.hooks.report("warning", `a data-channel message that is not JSON: ${String(data).slice(0, 80)}`);
      return;
    }
    this.hooks.send({ type: "webrtc.event", event: ev, t_page_ms: t });
    this.hooks.onEvent(ev);
  }

  /** Clock round trips: a burst now, then one every CLOCK_EVERY_MS while the call lives. */
  startClock() {
    if (this._clockTimer !== null) return;
    for (let i = 0; i < CLOCK_BURST; i++) setTimeout(() => this.ping(), i * CLOCK_BURST_GAP_MS);
    this._clockTimer = setInterval(() => this.ping(), CLOCK_EVERY_MS);
  }

  ping() {
    if (!this.closed) this.hooks.send({ type: "clock.ping", t_page_ms: epochMs() });
  }

  /**
   * A kernel message for this link; returns false for any other.
   * @param {any} msg
   */
  handle(msg) {
    switch (msg.type) {
      case "clock.pong":
        this.hooks.send({ type: "clock.sync", t_page_ms: msg.t_page_ms, t_kernel_ns: msg.t_kernel_ns, t_back_ms: epochMs() });
        return true;
      case "webrtc.answer":
        if (this._answer) this._answer.resolve(msg.sdp);
        return true;
      case "webrtc.error":
        if (this._answer) this._answer.reject(new Error(msg.message));
        else this.hooks.onProblem(`the call failed: ${msg.message}`);
        return true;
      default:
        return false;
    }
  }

  /** Mic on or off (and muted): the call goes on, the track sends silence. @param {boolean} on */
  setSending(on) {
    const t = this.track;
    if (t) t.enabled = on;
  }

  /** @param {Record<string, boolean>} options */
  async applyMicOptions(options) {
    const t = this.track;
    if (t) await t.applyConstraints({ channelCount: 1, ...options });
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    if (this._clockTimer !== null) clearInterval(this._clockTimer);
    if (this.pc) this.hooks.send({ type: "webrtc.hangup" });
    for (const n of this.nodes) n.disconnect();
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    if (this.sink) this.sink.srcObject = null;
    if (this.pc) this.pc.close();
    this.state = "closed";
  }
}

export { viewChange };
