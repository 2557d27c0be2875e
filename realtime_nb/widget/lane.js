// @ts-check
// The mic lane's Worker: mic chunks from the capture AudioWorklet straight to the kernel.
//
// The page's main thread is busy (drawing, every message JupyterLab handles, the reply audio),
// and a chunk sent over the comm waits for it: with reply audio playing, 60+ ms at p95. This
// Worker gets the chunks on a MessagePort from the worklet and sends them on a WebSocket of its
// own to the kernel's loopback lane (realtime_nb/widget/_miclane.py), so no chunk waits for the
// main thread. While the lane is not open (connecting, refused, the browser is on another
// machine than the kernel) every chunk goes back to the main thread, which sends it over the
// comm as before; the sequence number travels with the chunk, so the kernel orders both paths.
//
// engine.js starts this file as a module Worker from a Blob URL of its text; the pure parts
// below are exported for Node's test runner, and the bootstrap at the end runs only in a Worker.

/** Bytes before the PCM: seq u32, flags u32, t f64 (sent, epoch ms), tw f64 (posted, epoch ms). */
export const HEADER_BYTES = 24;
/** Connection attempts before the lane is declared down (the kernel may be learning our origin). */
export const CONNECT_ATTEMPTS = 3;
/** Wait between attempts, ms. */
export const RETRY_MS = 300;
/** How long the kernel has to answer "ready" before an attempt counts as failed, ms. */
export const READY_TIMEOUT_MS = 2000;
/**
 * Chunks kept after they went on the lane (2 s of 50 ms chunks): when an open lane closes, the
 * ones it may not have delivered go back to the main thread, marked `resend`, to be sent over
 * the comm; the kernel keeps those it lacks and drops the rest without counting duplicates.
 */
export const RESEND_CHUNKS = 40;

/**
 * One chunk as a lane message.
 * @param {number} seq the chunk's sequence number
 * @param {number} t epoch ms when it is sent
 * @param {number} tw epoch ms when the worklet posted it
 * @param {ArrayBuffer} pcm PCM16 LE
 * @returns {ArrayBuffer}
 */
export function encodeChunk(seq, t, tw, pcm) {
  const out = new ArrayBuffer(HEADER_BYTES + pcm.byteLength);
  const dv = new DataView(out);
  dv.setUint32(0, seq >>> 0, true);
  dv.setUint32(4, 0, true);
  dv.setFloat64(8, t, true);
  dv.setFloat64(16, tw, true);
  new Uint8Array(out, HEADER_BYTES).set(new Uint8Array(pcm));
  return out;
}

/**
 * The lane's state machine, with its I/O given: a WebSocket constructor, a clock, a timer and
 * the way back to the main thread.
 */
export class Lane {
  /**
   * @param {{
   *   url: string, view: string,
   *   connect: (url: string) => any,
   *   now: () => number,
   *   later: (fn: () => void, ms: number) => any,
   *   toMain: (msg: any, transfer?: Transferable[]) => void,
   * }} io
   */
  constructor(io) {
    this.io = io;
    /** @type {"connecting" | "open" | "down" | "closed"} */
    this.state = "connecting";
    this.attempts = 0;
    /** @type {any} */
    this.ws = null;
    this.sent = 0;
    this.relayed = 0;
    /** @type {any[]} the last RESEND_CHUNKS chunks sent on the lane, oldest first */
    this.recent = [];
  }

  start() {
    this.attempts += 1;
    const ws = this.io.connect(this.io.url);
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    let ready = false;
    const timer = this.io.later(() => {
      if (!ready && this.ws === ws) this._failed(ws, "the kernel did not answer");
    }, READY_TIMEOUT_MS);
    ws.onopen = () => ws.send(JSON.stringify({ view: this.io.view }));
    ws.onmessage = (/** @type {{data: any}} */ e) => {
      if (ready || typeof e.data !== "string") return;
      let m = null;
      try {
        m = JSON.parse(e.data);
      } catch (_) {
        /* not ours */
      }
      if (!m || m.type !== "ready") return this._failed(ws, "an unexpected answer on the lane's port");
      ready = true;
      if (typeof clearTimeout === "function") clearTimeout(timer);
      this.state = "open";
      this.io.toMain({ type: "lane", state: "open", attempts: this.attempts });
    };
    ws.onclose = (/** @type {{code?: number, reason?: string}} */ e) => {
      if (this.ws !== ws) return;
      this._failed(ws, ready ? `closed (${e.code ?? "?"} ${e.reason || ""})`.trim() : "could not connect");
    };
    ws.onerror = () => {};
  }

  /** @param {any} ws @param {string} reason */
  _failed(ws, reason) {
    if (this.ws !== ws || this.state === "closed") return;
    this.ws = null;
    try {
      ws.close();
    } catch (_) {
      /* already closed */
    }
    const wasOpen = this.state === "open";
    if (!wasOpen && this.attempts < CONNECT_ATTEMPTS) {
      this.state = "connecting";
      this.io.later(() => this.state === "connecting" && this.start(), RETRY_MS);
      return;
    }
    this.state = "down";
    // What was in flight when the socket closed never reached the kernel: send it again.
    for (const m of this.recent) this.io.toMain({ ...m, resend: true }, [m.pcm]);
    this.recent = [];
    this.io.toMain({ type: "lane", state: "down", reason, sent: this.sent });
  }

  /**
   * A chunk from the worklet: on the lane when it is open, else back to the main thread.
   * @param {{type: string, pcm: ArrayBuffer, seq: number, at: number, rms?: number, peak?: number}} m
   */
  chunk(m) {
    if (this.state === "open" && this.ws && this.ws.readyState === 1) {
      this.ws.send(encodeChunk(m.seq, this.io.now(), m.at, m.pcm));
      this.sent += 1;
      this.recent.push(m);
      if (this.recent.length > RESEND_CHUNKS) this.recent.shift();
      return;
    }
    this.relayed += 1;
    this.io.toMain(m, [m.pcm]);
  }

  close() {
    this.state = "closed";
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }
}

// --- bootstrap: only inside a Worker --------------------------------------------------------
const scope = /** @type {any} */ (globalThis);
if (typeof scope.WorkerGlobalScope !== "undefined" && scope instanceof scope.WorkerGlobalScope) {
  /** @type {Lane | null} */
  let lane = null;
  const toMain = (/** @type {any} */ msg, /** @type {Transferable[]} */ transfer = []) =>
    scope.postMessage(msg, transfer);
  scope.onmessage = (/** @type {MessageEvent} */ e) => {
    const m = e.data || {};
    if (m.cmd === "connect") {
      lane = new Lane({
        url: m.url,
        view: m.view,
        connect: (url) => new WebSocket(url),
        now: () => performance.timeOrigin + performance.now(),
        later: (fn, ms) => setTimeout(fn, ms),
        toMain,
      });
      const port = /** @type {MessagePort} */ (m.port);
      port.onmessage = (/** @type {MessageEvent} */ ev) => {
        // "end": the worklet sends no more chunks here; everything before it has been handled.
        if (ev.data && ev.data.type === "end") toMain({ type: "lane", state: "ended" });
        else if (lane) lane.chunk(ev.data);
      };
      lane.start();
    } else if (m.cmd === "close") {
      if (lane) lane.close();
      scope.close();
    } else {
      toMain({ type: "error", message: `mic lane: unknown command ${m.cmd}` });
    }
  };
}
