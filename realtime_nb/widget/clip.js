// @ts-check
// RecordingView's front end (widget/clip.py): the recording's HTML, whose players fetch an item's
// audio from the kernel when pressed. One plain ES module with no imports: it is the widget's whole
// `_esm`. The markup carries no audio; each `button.rtnb-clip` holds an item id and its duration.

/** @typedef {import("./types.js").Model} Model */

/** A clip the kernel sent: samples ready to play. @typedef {{buffer: AudioBuffer}} Clip */

/**
 * "m:ss.s" of seconds.
 * @param {number} seconds
 * @returns {string}
 */
export function clock(seconds) {
  const s = Math.round(Math.max(0, seconds) * 10) / 10; // tenths first: 59.96 s is 1:00.0
  const m = Math.floor(s / 60);
  const rest = (s - m * 60).toFixed(1).padStart(4, "0");
  return `${m}:${rest}`;
}

/**
 * PCM16 little-endian bytes -> float samples in [-1, 1).
 * @param {ArrayBuffer | DataView} data
 * @returns {Float32Array}
 */
export function pcm16ToFloat(data) {
  const view = data instanceof DataView ? data : new DataView(data);
  const n = Math.floor(view.byteLength / 2);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true) / 32768;
  return out;
}

/**
 * @param {{model: Model, el: HTMLElement}} ctx
 * @returns {() => void}
 */
function render({ model, el }) {
  /** @type {AudioContext | null} */
  let ctx = null;
  /** @type {Map<string, Clip>} */
  const clips = new Map();
  /** @type {Map<number, {button: HTMLButtonElement, item: string}>} */
  const pending = new Map();
  /** @type {{button: HTMLButtonElement, source: AudioBufferSourceNode, started: number, duration: number} | null} */
  let playing = null;
  let req = 0;
  let frame = 0;

  /** @param {HTMLButtonElement} button */
  const label = (button) => `▶ ${clock(Number(button.dataset.duration || 0))}`;

  const stop = () => {
    if (!playing) return;
    const { button, source } = playing;
    playing = null;
    source.onended = null;
    try {
      source.stop();
    } catch {
      // already ended
    }
    button.textContent = label(button);
    cancelAnimationFrame(frame);
  };

  const tick = () => {
    if (!playing || !ctx) return;
    const t = Math.min(ctx.currentTime - playing.started, playing.duration);
    playing.button.textContent = `■ ${clock(t)} / ${clock(playing.duration)}`;
    frame = requestAnimationFrame(tick);
  };

  /** @param {HTMLButtonElement} button @param {Clip} clip */
  const play = (button, clip) => {
    stop();
    if (!ctx) ctx = new AudioContext();
    void ctx.resume();
    const source = ctx.createBufferSource();
    source.buffer = clip.buffer;
    source.connect(ctx.destination);
    source.onended = () => {
      if (playing && playing.source === source) stop();
    };
    source.start();
    playing = { button, source, started: ctx.currentTime, duration: clip.buffer.duration };
    tick();
  };

  /** @param {MouseEvent} ev */
  const onClick = (ev) => {
    const target = /** @type {HTMLElement | null} */ (ev.target);
    const button = /** @type {HTMLButtonElement | null} */ (target?.closest("button.rtnb-clip") ?? null);
    if (!button || !el.contains(button)) return;
    const item = button.dataset.item || "";
    if (playing && playing.button === button) {
      stop();
      return;
    }
    const clip = clips.get(item);
    if (clip) {
      play(button, clip);
      return;
    }
    if (!ctx) ctx = new AudioContext(); // created in the click: browsers allow audio then
    req += 1;
    pending.set(req, { button, item });
    button.textContent = "… loading";
    model.send({ type: "get_clip", req, item_id: item });
  };

  /**
   * @param {any} msg
   * @param {(ArrayBuffer | DataView)[]} buffers
   */
  const onMessage = (msg, buffers) => {
    switch (msg && msg.type) {
      case "clip": {
        const wait = pending.get(msg.req);
        pending.delete(msg.req);
        if (!wait || !ctx || !buffers || !buffers.length) return;
        const samples = pcm16ToFloat(buffers[0]);
        const buffer = ctx.createBuffer(1, Math.max(1, samples.length), msg.rate);
        buffer.getChannelData(0).set(samples);
        const clip = { buffer };
        clips.set(wait.item, clip);
        wait.button.textContent = label(wait.button);
        play(wait.button, clip);
        break;
      }
      case "error": {
        const wait = pending.get(msg.req);
        pending.delete(msg.req);
        if (wait) {
          wait.button.textContent = "⚠ no audio";
          wait.button.title = String(msg.text);
        }
        break;
      }
      default:
        console.warn("realtime_nb clip: unknown message type", msg && msg.type);
    }
  };

  const draw = () => {
    stop();
    el.innerHTML = model.get("html");
    for (const b of el.querySelectorAll("button.rtnb-clip")) {
      const button = /** @type {HTMLButtonElement} */ (b);
      button.disabled = false;
      button.title = "play (the audio is fetched from the kernel)";
      button.textContent = label(button);
    }
  };

  draw();
  el.addEventListener("click", onClick);
  model.on("msg:custom", onMessage);
  model.on("change:html", draw);
  return () => {
    stop();
    el.removeEventListener("click", onClick);
    model.off("msg:custom", onMessage);
    model.off("change:html", draw);
    if (ctx) void ctx.close();
  };
}

export default { render };
