// @ts-check
// AudioWorklet processors of the realtime_nb widget.
//
// This file is not loaded on its own: _sources.py (worklet_source) prepends audio.js (exports stripped) so that
// StreamingResampler, PcmChunker, PlaybackQueue, levels, bytesToPcm16 and pcm16ToFloat are in
// scope, and engine.js loads the result from a Blob URL (a worklet cannot import relative to a
// Blob URL, and JupyterLab serves no route for package files).
//
// Both processors run at the AudioContext's own rate (`sampleRate`, usually the device's). They
// resample here rather than asking for `new AudioContext({sampleRate})`: Firefox refuses to
// connect a microphone to a context whose rate differs from the mic's.

/* global sampleRate, registerProcessor, AudioWorkletProcessor, StreamingResampler, PcmChunker,
   PlaybackQueue, levels, bytesToPcm16, pcm16ToFloat */

/** Level reports while the capture gate is closed, in render quanta (128 frames): ~50 ms at 48 kHz. */
const IDLE_LEVEL_EVERY = 18;
/** Playback progress reports, in render quanta: ~100 ms at 48 kHz. */
const PROGRESS_EVERY = 37;

/**
 * Microphone -> PCM16 chunks at the session's input rate.
 *
 * processorOptions: {inputRate: number, chunkMs: number}. Port in: {cmd: "start", seq?} opens the gate
 * (chunks numbered from `seq`), {cmd: "stop"} closes it, emits the partial last chunk, then
 * {type: "stopped", seq} (the next chunk's number); {cmd: "muted", value} sends silence instead of
 * the mic (levels still show it); {cmd: "lane", port: MessagePort | null} sends chunks to the mic
 * lane's Worker instead of the main thread (lane.js), and {type: "end"} on the lane it replaces. Out: {type: "chunk", pcm: ArrayBuffer, seq,
 * rms, peak, at} (the buffer is transferred; `at`: epoch ms) on the lane or the port; on the port a
 * {type: "level", rms, peak} for each chunk that went on the lane, and while the gate is closed, so
 * the meter still shows that the mic is live.
 */
class CaptureProcessor extends AudioWorkletProcessor {
  /** @param {{processorOptions: {inputRate: number, chunkMs: number}}} options */
  constructor(options) {
    super();
    const { inputRate, chunkMs } = options.processorOptions;
    this.resampler = new StreamingResampler(sampleRate, inputRate);
    this.chunker = new PcmChunker(Math.round((inputRate * chunkMs) / 1000));
    this.open = false;
    this.quanta = 0;
    this.seq = 0;
    this.muted = false;
    /** @type {MessagePort | null} the mic lane's Worker, when there is one */
    this.lane = null;
    this.port.onmessage = (/** @type {MessageEvent} */ e) => {
      const cmd = e.data && e.data.cmd;
      if (cmd === "start") {
        this.resampler.reset();
        if (typeof e.data.seq === "number") this.seq = e.data.seq;
        this.open = true;
      } else if (cmd === "muted") {
        this.muted = !!e.data.value;
      } else if (cmd === "lane") {
        // The old lane learns it gets no more chunks, after every one it got: its Worker may
        // then close without losing any.
        if (this.lane) this.lane.postMessage({ type: "end" });
        this.lane = e.data.port || null;
      } else if (cmd === "stop") {
        if (this.open) {
          this.open = false;
          const tail = this.resampler.flush();
          for (const c of this.chunker.push(tail)) this.post(c);
          const last = this.chunker.flush();
          if (last) this.post(last);
        }
        this.port.postMessage({ type: "stopped", seq: this.seq });
      } else {
        this.port.postMessage({ type: "error", message: `capture: unknown command ${cmd}` });
      }
    };
  }

  /** @param {Int16Array} pcm */
  post(pcm) {
    const { rms, peak } = levels(pcm);
    if (this.muted) pcm.fill(0);
    // Date.now() is the one wall clock a worklet has: it stamps when the chunk left the audio
    // thread, so the page can tell a wait for its main thread apart from the comm's.
    const chunk = { type: "chunk", pcm: pcm.buffer, seq: this.seq++, rms, peak, at: Date.now() };
    if (this.lane) {
      this.lane.postMessage(chunk, [pcm.buffer]);
      this.port.postMessage({ type: "level", rms, peak });
    } else {
      this.port.postMessage(chunk, [pcm.buffer]);
    }
  }

  /** @param {Float32Array[][]} inputs */
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    if (this.open) {
      for (const c of this.chunker.push(this.resampler.process(channel))) this.post(c);
    } else if (++this.quanta % IDLE_LEVEL_EVERY === 0) {
      this.port.postMessage({ type: "level", ...levels(channel) });
    }
    return true;
  }
}

/**
 * PCM16 at the session's output rate -> speakers, through a PlaybackQueue at the context rate.
 *
 * processorOptions: {outputRate: number, prebufferMs: number}. Port in:
 * {cmd: "push", itemId, pcm: ArrayBuffer} (PCM16 LE at outputRate), {cmd: "end", itemId},
 * {cmd: "flush", token}. Port out: {type: "started", itemId}, {type: "finished", itemId,
 * playedMs}, {type: "flushed", token, items: FlushedItem[]}, {type: "progress", itemId,
 * playedMs, queuedMs}.
 */
class PlaybackProcessor extends AudioWorkletProcessor {
  /** @param {{processorOptions: {outputRate: number, prebufferMs: number}}} options */
  constructor(options) {
    super();
    const { outputRate, prebufferMs } = options.processorOptions;
    this.queue = new PlaybackQueue(sampleRate, { prebufferMs });
    this.resampler = new StreamingResampler(outputRate, sampleRate);
    /** @type {string | null} the item whose samples are inside the resampler */
    this.lastItem = null;
    /** @type {string | null} */
    this.current = null;
    this.quanta = 0;
    this.port.onmessage = (/** @type {MessageEvent} */ e) => this.command(e.data);
  }

  /** Push the resampler's tail into the item it belongs to. */
  drainResampler() {
    if (this.lastItem !== null) this.queue.push(this.lastItem, this.resampler.flush());
    this.lastItem = null;
  }

  /** @param {any} m */
  command(m) {
    switch (m && m.cmd) {
      case "push": {
        if (this.lastItem !== null && this.lastItem !== m.itemId) this.drainResampler();
        this.lastItem = m.itemId;
        this.queue.push(m.itemId, this.resampler.process(pcm16ToFloat(bytesToPcm16(m.pcm))));
        break;
      }
      case "end":
        if (this.lastItem === m.itemId) this.drainResampler();
        this.queue.end(m.itemId);
        break;
      case "flush": {
        this.resampler.reset();
        this.lastItem = null;
        this.current = null;
        this.port.postMessage({ type: "flushed", token: m.token, items: this.queue.flush() });
        break;
      }
      default:
        this.port.postMessage({ type: "error", message: `playback: unknown command ${m && m.cmd}` });
    }
  }

  /** @param {Float32Array[][]} _inputs @param {Float32Array[][]} outputs */
  process(_inputs, outputs) {
    const out = outputs[0];
    if (!out || !out.length) return true;
    const events = this.queue.render(out[0]);
    for (let c = 1; c < out.length; c++) out[c].set(out[0]);
    for (const ev of events) {
      if (ev.type === "started") this.current = ev.itemId;
      if (ev.type === "finished" && this.current === ev.itemId) this.current = null;
      this.port.postMessage(ev);
    }
    if (this.current !== null && ++this.quanta % PROGRESS_EVERY === 0) {
      this.port.postMessage({
        type: "progress",
        itemId: this.current,
        playedMs: this.queue.playedMs(this.current),
        queuedMs: this.queue.queuedMs,
      });
    }
    return true;
  }
}

registerProcessor("rtnb-capture", CaptureProcessor);
registerProcessor("rtnb-playback", PlaybackProcessor);
