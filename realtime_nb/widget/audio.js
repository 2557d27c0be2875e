// @ts-check
// Pure audio logic for the realtime_nb widget: no DOM, no WebAudio, no I/O.
//
// Used in three places: the AudioWorklet (capture and playback processors), the widget's main
// thread, and Node's test runner (`node --test tests/js/`). The worklet cannot import modules
// relative to a Blob URL, so _sources.py concatenates this file (with the `export` keywords removed)
// in front of worklet.js: keep every export a top-level `export class|function|const` at the start
// of a line, and import nothing.

/** Zero crossings of the windowed-sinc kernel on each side: 8 gives about 60 dB of stop band with
 * the Kaiser window below, well under the mic's own noise, at ~35 taps for 48 kHz -> 24 kHz. */
export const RESAMPLER_ZERO_CROSSINGS = 8;
/** Kaiser beta for ~60 dB attenuation (Kaiser's formula: 0.1102 * (60 - 8.7)). */
export const RESAMPLER_KAISER_BETA = 5.65;
/** Pass band edge as a fraction of the lower Nyquist: the last 8 % is the transition band. */
export const RESAMPLER_ROLLOFF = 0.92;
/** Kernel table points per input sample; linear interpolation between them is exact to ~1e-5. */
const KERNEL_TABLE_RES = 512;

/** Modified Bessel function of the first kind, order 0 (power series; converges fast for x < 30).
 * @param {number} x
 * @returns {number}
 */
function besselI0(x) {
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 50; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

/**
 * Streaming band-limited resampler for an arbitrary rate ratio (windowed sinc, Kaiser window).
 *
 * Feed chunks of any size to `process()`; the concatenated output equals resampling the
 * concatenated input in one go. Output sample n sits at input position n * src / dst, so over time
 * exactly dst/src outputs come out per input (no drift). Latency: half the kernel, under 0.5 ms.
 */
export class StreamingResampler {
  /**
   * @param {number} srcRate input sample rate (Hz)
   * @param {number} dstRate output sample rate (Hz)
   */
  constructor(srcRate, dstRate) {
    if (!(srcRate > 0) || !(dstRate > 0)) throw new RangeError(`bad rates ${srcRate} -> ${dstRate}`);
    /** @readonly */ this.srcRate = srcRate;
    /** @readonly */ this.dstRate = dstRate;
    /** @readonly */ this.passthrough = srcRate === dstRate;
    // Cut-off relative to the input Nyquist: below the output Nyquist when downsampling.
    const fc = Math.min(1, dstRate / srcRate) * RESAMPLER_ROLLOFF;
    this._fc = fc;
    /** Half-width of the kernel in input samples. */
    this._half = RESAMPLER_ZERO_CROSSINGS / fc;
    const n = Math.ceil(this._half * KERNEL_TABLE_RES) + 2;
    this._table = new Float32Array(n);
    const i0b = besselI0(RESAMPLER_KAISER_BETA);
    for (let i = 0; i < n; i++) {
      const d = i / KERNEL_TABLE_RES;
      if (d >= this._half) break;
      const x = fc * d;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const r = d / this._half;
      const w = besselI0(RESAMPLER_KAISER_BETA * Math.sqrt(1 - r * r)) / i0b;
      this._table[i] = fc * sinc * w;
    }
    /** @type {Float32Array} input history; index 0 is absolute input sample `_bufStart` */
    this._buf = new Float32Array(0);
    this._bufStart = 0;
    /** absolute count of input samples received */
    this._nIn = 0;
    /** index of the next output sample */
    this._nOut = 0;
  }

  /** Forget all history (e.g. after a playback flush), as if newly constructed. */
  reset() {
    this._buf = new Float32Array(0);
    this._bufStart = 0;
    this._nIn = 0;
    this._nOut = 0;
  }

  /** @param {number} d distance in input samples @returns {number} */
  _kernel(d) {
    const a = Math.abs(d) * KERNEL_TABLE_RES;
    const i = Math.floor(a);
    const t = this._table;
    if (i + 1 >= t.length) return 0;
    const f = a - i;
    return t[i] + (t[i + 1] - t[i]) * f;
  }

  /**
   * @param {Float32Array} input
   * @returns {Float32Array} every output sample whose kernel is now fully covered by input
   */
  process(input) {
    if (this.passthrough) return input.slice();
    this._append(input);
    return this._emit(false);
  }

  /**
   * Emit the tail (treating the future input as silence). The resampler is reset afterwards.
   * @returns {Float32Array}
   */
  flush() {
    if (this.passthrough) return new Float32Array(0);
    const out = this._emit(true);
    this.reset();
    return out;
  }

  /** @param {Float32Array} input */
  _append(input) {
    const buf = new Float32Array(this._buf.length + input.length);
    buf.set(this._buf, 0);
    buf.set(input, this._buf.length);
    this._buf = buf;
    this._nIn += input.length;
  }

  /** @param {boolean} final @returns {Float32Array} */
  _emit(final) {
    const ratio = this.srcRate / this.dstRate;
    const half = this._half;
    // Last output index we may compute: its kernel must end before the input we have (or, when
    // final, its centre must lie within the input received).
    let nStop;
    if (final) {
      nStop = Math.ceil((this._nIn * this.dstRate) / this.srcRate);
    } else {
      nStop = Math.floor(((this._nIn - 1 - half) * this.dstRate) / this.srcRate) + 1;
    }
    const count = Math.max(0, nStop - this._nOut);
    const out = new Float32Array(count);
    const buf = this._buf;
    const start = this._bufStart;
    for (let k = 0; k < count; k++) {
      const pos = ((this._nOut + k) * this.srcRate) / this.dstRate;
      const jLo = Math.max(Math.ceil(pos - half), start);
      const jHi = Math.min(Math.floor(pos + half), this._nIn - 1);
      let acc = 0;
      for (let j = jLo; j <= jHi; j++) acc += buf[j - start] * this._kernel(pos - j);
      out[k] = acc;
    }
    this._nOut += count;
    // Drop the history no future output needs.
    const nextPos = this._nOut * ratio;
    const keepFrom = Math.max(0, Math.ceil(nextPos - half) - start);
    if (keepFrom > 0) {
      this._buf = this._buf.slice(Math.min(keepFrom, this._buf.length));
      this._bufStart += Math.min(keepFrom, buf.length);
    }
    return out;
  }
}

/**
 * Float samples in [-1, 1] to PCM16: scaled by 32768, rounded, clipped to [-32768, 32767] (as
 * realtime_nb.core.audio.float32_to_pcm16 does, so PCM16 -> float -> PCM16 is exact). NaN -> 0.
 * @param {Float32Array} samples
 * @returns {Int16Array}
 */
export function floatToPcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.round(samples[i] * 32768);
    out[i] = v > 32767 ? 32767 : v < -32768 ? -32768 : v === v ? v : 0;
  }
  return out;
}

/**
 * PCM16 to float samples in [-1, 1).
 * @param {Int16Array} pcm
 * @returns {Float32Array}
 */
export function pcm16ToFloat(pcm) {
  const out = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
  return out;
}

/**
 * Little-endian PCM16 bytes (any alignment; an odd trailing byte is dropped) to an Int16Array.
 * Comm buffers arrive as DataViews whose byteOffset may be odd, so no Int16Array view is taken.
 * @param {ArrayBuffer | ArrayBufferView} bytes
 * @returns {Int16Array}
 */
export function bytesToPcm16(bytes) {
  const view =
    bytes instanceof ArrayBuffer
      ? new DataView(bytes)
      : new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.byteLength >> 1;
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true);
  return out;
}

/**
 * RMS and peak of a block, both linear in [0, 1].
 * @param {Float32Array | Int16Array} samples floats, or PCM16 (scaled by 1/32768)
 * @returns {{rms: number, peak: number}}
 */
export function levels(samples) {
  const scale = samples instanceof Int16Array ? 1 / 32768 : 1;
  let sum = 0;
  let peak = 0;
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i] * scale;
    sum += v * v;
    const a = v < 0 ? -v : v;
    if (a > peak) peak = a;
  }
  return { rms: samples.length ? Math.sqrt(sum / samples.length) : 0, peak };
}

/**
 * A linear level in [0, 1] to a meter position in [0, 1] on a -60..0 dBFS scale.
 * @param {number} linear
 * @returns {number}
 */
export function meterPosition(linear) {
  if (!(linear > 0)) return 0;
  const db = 20 * Math.log10(linear);
  return Math.min(1, Math.max(0, (db + 60) / 60));
}

/**
 * Cuts a float stream into PCM16 chunks of exactly `size` samples.
 */
export class PcmChunker {
  /** @param {number} size samples per chunk */
  constructor(size) {
    if (!(size >= 1)) throw new RangeError(`bad chunk size ${size}`);
    this.size = Math.floor(size);
    this._buf = new Float32Array(this.size);
    this._fill = 0;
  }

  /**
   * @param {Float32Array} samples
   * @returns {Int16Array[]} the chunks completed by these samples (often none)
   */
  push(samples) {
    /** @type {Int16Array[]} */
    const out = [];
    let i = 0;
    while (i < samples.length) {
      const n = Math.min(this.size - this._fill, samples.length - i);
      this._buf.set(samples.subarray(i, i + n), this._fill);
      this._fill += n;
      i += n;
      if (this._fill === this.size) {
        out.push(floatToPcm16(this._buf));
        this._fill = 0;
      }
    }
    return out;
  }

  /** @returns {Int16Array | null} the partial chunk, if any; the chunker is then empty */
  flush() {
    if (this._fill === 0) return null;
    const out = floatToPcm16(this._buf.subarray(0, this._fill));
    this._fill = 0;
    return out;
  }
}

/**
 * @typedef {{type: "started", itemId: string}
 *   | {type: "finished", itemId: string, playedMs: number}} PlaybackEvent
 * @typedef {{itemId: string, playedMs: number, queuedMs: number, started: boolean}} FlushedItem
 * @typedef {{pushed: number, rendered: number, ended: boolean, started: boolean}} ItemState
 */

/**
 * The playback queue: audio segments tagged with their item id, rendered block by block.
 *
 * It counts, per item, the samples actually rendered (handed to the audio output), which is what
 * the user will have heard once the output drains: that count is the truncation point on
 * interruption. A new item starts only after `prebufferMs` of it is queued (or it has ended, or
 * `prebufferMs` has passed), and an underrun mid-item re-enters that wait, so tiny deltas that
 * arrive with jitter do not play as crackle.
 */
export class PlaybackQueue {
  /**
   * @param {number} rate samples per second of everything pushed and rendered
   * @param {{prebufferMs?: number}} [options]
   */
  constructor(rate, options = {}) {
    this.rate = rate;
    this.prebuffer = Math.round(((options.prebufferMs ?? 60) * rate) / 1000);
    /** @type {{itemId: string, data: Float32Array, offset: number}[]} */
    this._segments = [];
    /** @type {Map<string, ItemState>} */
    this._items = new Map();
    /** @type {PlaybackEvent[]} events raised outside render(), returned by the next render() */
    this._pending = [];
    this._playing = false;
    this._waited = 0;
    this._queued = 0;
  }

  /** @param {string} itemId @returns {ItemState} */
  _item(itemId) {
    let s = this._items.get(itemId);
    if (!s) {
      s = { pushed: 0, rendered: 0, ended: false, started: false };
      this._items.set(itemId, s);
    }
    return s;
  }

  /**
   * Queue samples of an item (at `rate`).
   * @param {string} itemId
   * @param {Float32Array} samples
   */
  push(itemId, samples) {
    if (!samples.length) return;
    this._item(itemId).pushed += samples.length;
    this._segments.push({ itemId, data: samples, offset: 0 });
    this._queued += samples.length;
  }

  /**
   * No more audio will come for this item: it finishes when its last sample is rendered.
   * @param {string} itemId
   */
  end(itemId) {
    const s = this._items.get(itemId);
    if (!s) return;
    s.ended = true;
    if (s.rendered === s.pushed) this._finish(itemId, s, this._pending);
  }

  /** @param {string} itemId @param {ItemState} s @param {PlaybackEvent[]} events */
  _finish(itemId, s, events) {
    events.push({ type: "finished", itemId, playedMs: (s.rendered * 1000) / this.rate });
    this._items.delete(itemId);
  }

  /** Milliseconds queued and not yet rendered. */
  get queuedMs() {
    return (this._queued * 1000) / this.rate;
  }

  /** Whether an item is being rendered now (false while waiting for the pre-buffer). */
  get playing() {
    return this._playing;
  }

  /**
   * Milliseconds of an item rendered so far (0 for an unknown or finished item).
   * @param {string} itemId
   */
  playedMs(itemId) {
    const s = this._items.get(itemId);
    return s ? (s.rendered * 1000) / this.rate : 0;
  }

  /**
   * Fill `out` with the next samples (silence where there is nothing to play).
   * @param {Float32Array} out
   * @returns {PlaybackEvent[]}
   */
  render(out) {
    const events = this._pending;
    this._pending = [];
    let i = 0;
    while (i < out.length) {
      if (!this._segments.length) {
        this._playing = false;
        this._waited = 0;
        break;
      }
      const seg = this._segments[0];
      const s = this._item(seg.itemId);
      if (!this._playing) {
        // Pre-buffer: enough of this item queued, or its end known, or waited long enough.
        let ahead = 0;
        for (const g of this._segments) {
          if (g.itemId !== seg.itemId) break;
          ahead += g.data.length - g.offset;
        }
        if (ahead >= this.prebuffer || s.ended || this._waited >= this.prebuffer) {
          this._playing = true;
        } else {
          this._waited += out.length - i;
          break;
        }
      }
      if (!s.started) {
        s.started = true;
        events.push({ type: "started", itemId: seg.itemId });
      }
      const n = Math.min(seg.data.length - seg.offset, out.length - i);
      out.set(seg.data.subarray(seg.offset, seg.offset + n), i);
      seg.offset += n;
      s.rendered += n;
      this._queued -= n;
      i += n;
      if (seg.offset === seg.data.length) {
        this._segments.shift();
        if (s.ended && s.rendered === s.pushed) this._finish(seg.itemId, s, events);
        // The next item gets its own pre-buffer.
        if (this._segments.length && this._segments[0].itemId !== seg.itemId) {
          this._playing = false;
          this._waited = 0;
        }
      }
    }
    out.fill(0, i);
    return events;
  }

  /**
   * Drop everything queued at once (interruption or stop).
   * @returns {FlushedItem[]} every unfinished item, with what of it was rendered
   */
  flush() {
    /** @type {FlushedItem[]} */
    const flushed = [];
    for (const [itemId, s] of this._items) {
      flushed.push({
        itemId,
        playedMs: (s.rendered * 1000) / this.rate,
        queuedMs: ((s.pushed - s.rendered) * 1000) / this.rate,
        started: s.started,
      });
    }
    this._segments = [];
    this._items.clear();
    this._pending = this._pending.filter((e) => e.type !== "started");
    this._playing = false;
    this._waited = 0;
    this._queued = 0;
    return flushed;
  }
}
