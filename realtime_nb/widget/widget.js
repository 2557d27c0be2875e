// realtime_nb widget front end: plain ESM, no build step (loaded by anywidget from widget.py).
//
// The kernel half (widget.py) documents the comm message catalogue. Here: the DOM, the audio
// engine (one AudioContext, two AudioWorklet processors from worklet.js) and the live views.
// Pure audio logic lives in audio.js, the DOM helpers shared with replay.js in ui.js; they and the
// worklet arrive as traits (`_audio_js`, `_ui_js`, `_worklet_js`) and load from Blob URLs, so
// nothing needs an HTTP route of its own.

/** @typedef {{get(k: string): any, set(k: string, v: any): void, save_changes(): void,
 *   on(e: string, f: Function): void, off(e?: string, f?: Function): void,
 *   send(msg: any, callbacks?: any, buffers?: (ArrayBuffer | ArrayBufferView)[]): void}} Model */
/** @typedef {{seq: number, t_ms: number, source: string, type: string, item_id: string | null,
 *   response_id: string | null, data: any}} LogEvent */
/** @typedef {{id: string, type?: string, role?: string, status?: string, text?: string | null,
 *   truncated?: boolean, truncated_ms?: number, truncate_requested_ms?: number, heard_text?: string,
 *   played_ms?: number, has_audio?: boolean, name?: string, call_id?: string,
 *   arguments?: string, output?: string}} Item */

const VOICES = ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"];
const MODES = [
  ["push_to_talk", "Push to talk"],
  ["server_vad", "Hands-free · server VAD"],
  ["semantic_vad", "Hands-free · semantic VAD"],
];
/** Events the log keeps; older ones go (the kernel keeps the full recording). */
const MAX_EVENTS = 3000;
/** Event types whose consecutive runs collapse into one row. */
const COLLAPSIBLE = /(\.delta$|^input_audio_buffer\.append$)/;

/**
 * The DOM helper of ui.js (shared with the replay view). ui.js arrives as the `_ui_js` trait, so
 * render() sets this from its import before it builds anything; nothing at module level calls it.
 * @type {typeof import("./ui.js").h}
 */
let h;

/** @param {string} source @param {string} type */
function blobUrl(source, type = "text/javascript") {
  return URL.createObjectURL(new Blob([source], { type }));
}

/** Material icons (Apache 2.0) as inline SVG: emoji are missing from many fonts. */
const ICONS = /** @type {Record<string, string>} */ ({
  mic: "M12 14c1.66 0 3-1.34 3-3V5c0-1.66-1.34-3-3-3S9 3.34 9 5v6c0 1.66 1.34 3 3 3zm5.3-3c0 3-2.54 5.1-5.3 5.1S6.7 14 6.7 11H5c0 3.41 2.72 6.23 6 6.72V21h2v-3.28c3.28-.48 6-3.3 6-6.72h-1.7z",
  micOff: "M19 11h-1.7c0 .74-.16 1.43-.43 2.05l1.23 1.23c.56-.98.9-2.09.9-3.28zm-4.02.17c0-.06.02-.11.02-.17V5c0-1.66-1.34-3-3-3S9 3.34 9 5v.18l5.98 5.99zM4.27 3 3 4.27l6.01 6.01V11c0 1.66 1.33 3 2.99 3 .22 0 .44-.03.65-.08l1.66 1.66c-.71.33-1.5.52-2.31.52-2.76 0-5.3-2.1-5.3-5.1H5c0 3.41 2.72 6.23 6 6.72V21h2v-3.28c.91-.13 1.77-.45 2.54-.9L19.73 21 21 19.73 4.27 3z",
  stop: "M6 6h12v12H6z",
  send: "M2.01 21 23 12 2.01 3 2 10l15 2-15 2z",
});

/** @param {string} name @param {string} label */
function iconLabel(name, label) {
  const span = h("span", { class: "rtnb-icon-label" });
  span.innerHTML = `<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true"><path fill="currentColor" d="${ICONS[name]}"/></svg>`;
  span.append(label);
  return span;
}

const epochMs = () => performance.timeOrigin + performance.now();

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
class AudioEngine {
  /**
   * @param {Model} model
   * @param {{onWorklet: (m: any) => void}} hooks
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
    this._moduleUrl = blobUrl(this.model.get("_worklet_js"));
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
      const done = this._stopped;
      this._stopped = null;
      if (done) done();
    } else {
      this.hooks.onWorklet(m);
    }
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
   */
  async openMic(options) {
    const ctx = await this.context();
    await this.resume();
    if (this.stream) return;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, ...options },
    });
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
  }

  /** @param {Record<string, boolean>} options */
  async applyMicOptions(options) {
    const track = this.stream && this.stream.getAudioTracks()[0];
    if (track) await track.applyConstraints({ channelCount: 1, ...options });
  }

  startCapture() {
    if (this.capNode) this.capNode.port.postMessage({ cmd: "start" });
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

/** @param {number} ms */
function fmtSeconds(ms) {
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

/** @param {any} v */
function pretty(v) {
  if (typeof v === "string") {
    try {
      return JSON.stringify(JSON.parse(v), null, 2);
    } catch (_) {
      return v;
    }
  }
  return JSON.stringify(v, null, 2);
}

/** @param {{model: Model, el: HTMLElement}} ctx */
async function render({ model, el }) {
  const view = Math.random().toString(36).slice(2, 14);
  // Without ui.js there is no DOM to build: a failure here fails the render, and anywidget shows it.
  const uiUrl = blobUrl(model.get("_ui_js"));
  /** @type {typeof import("./ui.js")} */
  let ui;
  try {
    ui = await import(/* webpackIgnore: true */ uiUrl);
  } finally {
    URL.revokeObjectURL(uiUrl);
  }
  h = ui.h;
  /** @type {any} */
  let audioLib = null;
  try {
    const url = blobUrl(model.get("_audio_js"));
    audioLib = await import(/* webpackIgnore: true */ url);
    URL.revokeObjectURL(url);
  } catch (err) {
    console.warn("realtime_nb: audio.js failed to load", err);
  }

  /** @param {any} msg @param {(ArrayBuffer | ArrayBufferView)[]} [buffers] */
  const send = (msg, buffers) => model.send({ ...msg, view }, undefined, buffers);
  /** @param {string} level @param {string} message */
  const report = (level, message) => {
    console.warn(`realtime_nb: ${message}`);
    send({ type: "log", level, message });
  };

  // --- DOM ----------------------------------------------------------------------------------
  const dot = h("span", { class: "rtnb-dot" });
  const statusText = h("span", { class: "rtnb-status-text" });
  const backend = h("span", { class: "rtnb-backend" });
  const statsEl = h("span", { class: "rtnb-stats" });
  const header = h("div", { class: "rtnb-header" }, dot, statusText, backend, statsEl);

  const micBtn = h("button", { class: "rtnb-btn rtnb-mic", type: "button" });
  const muteBtn = h("button", { class: "rtnb-btn rtnb-mute", type: "button", title: "Mute the mic" });
  const stopBtn = h(
    "button",
    { class: "rtnb-btn rtnb-stop", type: "button", title: "Stop the assistant" },
    iconLabel("stop", "Stop"),
  );
  const modeSel = /** @type {HTMLSelectElement} */ (
    h("select", { class: "rtnb-mode", title: "Turn detection" },
      ...MODES.map(([v, label]) => h("option", { value: v }, label)))
  );
  const meterFill = h("div", { class: "rtnb-meter-fill" });
  const meter = h("div", { class: "rtnb-meter", title: "Input level" }, meterFill);
  const playing = h("span", { class: "rtnb-playing" });
  const controls = h("div", { class: "rtnb-controls" }, micBtn, muteBtn, stopBtn, modeSel, meter, playing);
  const noticeEl = h("div", { class: "rtnb-notice", hidden: true });

  const tabNames = ["Transcript", "Events", "Tools", "Turns", "Settings"];
  const { tabs, panes, show } = ui.makeTabs(tabNames);

  // Transcript
  const transcript = h("div", { class: "rtnb-transcript" });
  const emptyTranscript = h("div", { class: "rtnb-empty" }, "Nothing said yet. Press the mic or type below.");
  panes.Transcript.append(emptyTranscript, transcript);

  // Events
  const filterInput = /** @type {HTMLInputElement} */ (
    h("input", { class: "rtnb-filter", type: "search", placeholder: "Filter by type (e.g. response.)" })
  );
  const sourceSel = /** @type {HTMLSelectElement} */ (
    h("select", { class: "rtnb-source" },
      h("option", { value: "" }, "all sources"),
      h("option", { value: "client" }, "→ client"),
      h("option", { value: "server" }, "← server"),
      h("option", { value: "local" }, "• local"))
  );
  const eventCount = h("span", { class: "rtnb-count" });
  const eventList = h("div", { class: "rtnb-events" });
  panes.Events.append(h("div", { class: "rtnb-toolbar" }, filterInput, sourceSel, eventCount), eventList);

  // Tools, turns
  const toolList = h("div", { class: "rtnb-tools" });
  panes.Tools.append(toolList);
  const turnsTable = h("table", { class: "rtnb-turns" });
  panes.Turns.append(turnsTable);

  // Settings
  const instructions = /** @type {HTMLTextAreaElement} */ (h("textarea", { class: "rtnb-instructions", rows: 4 }));
  const voiceSel = /** @type {HTMLSelectElement} */ (
    h("select", { class: "rtnb-voice" }, ...VOICES.map((v) => h("option", { value: v }, v)))
  );
  const vadSel = /** @type {HTMLSelectElement} */ (
    h("select", { class: "rtnb-vad" }, ...MODES.map(([v, label]) => h("option", { value: v }, label)))
  );
  /** @type {Record<string, HTMLInputElement>} */
  const micChecks = {};
  const micOptionLabels = {
    echoCancellation: "Echo cancellation",
    noiseSuppression: "Noise suppression",
    autoGainControl: "Automatic gain",
  };
  const micOpts = h("div", { class: "rtnb-micopts" });
  for (const [key, label] of Object.entries(micOptionLabels)) {
    const cb = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", onchange: onMicOption }));
    micChecks[key] = cb;
    micOpts.append(h("label", {}, cb, ` ${label}`));
  }
  const applyBtn = h("button", { class: "rtnb-btn rtnb-apply", type: "button", onclick: applySettings }, "Apply");
  panes.Settings.append(
    h("label", { class: "rtnb-field" }, h("span", {}, "Instructions"), instructions),
    h("div", { class: "rtnb-row" },
      h("label", { class: "rtnb-field" }, h("span", {}, "Voice"), voiceSel),
      h("label", { class: "rtnb-field" }, h("span", {}, "Turn detection"), vadSel),
      applyBtn),
    h("div", { class: "rtnb-field" }, h("span", {}, "Microphone processing (applies live)"), micOpts),
  );

  // Text input
  const textInput = /** @type {HTMLInputElement} */ (
    h("input", { class: "rtnb-textinput", type: "text", placeholder: "Type a message and press Enter" })
  );
  const sendBtn = h("button", { class: "rtnb-btn rtnb-send", type: "button" }, iconLabel("send", "Send"));
  const textRow = h("div", { class: "rtnb-textrow" }, textInput, sendBtn);

  const root = h("div", { class: "rtnb-root", tabindex: 0 }, header, controls, noticeEl, tabs,
    ...tabNames.map((n) => panes[n]), textRow);
  el.append(root);
  show("Transcript");

  // --- state ----------------------------------------------------------------------------------
  const capture = captureProblem();
  const engine = new AudioEngine(model, { onWorklet });
  /** @type {Map<string, Item>} */
  const items = new Map();
  /** @type {string[]} */
  let order = [];
  /** @type {Map<string, HTMLElement>} */
  const itemNodes = new Map();
  /** @type {Map<string, {played_ms: number, reason: string}>} */
  const playedByItem = new Map();
  /** Items whose playback this view cut (stop, interruption): audio of theirs still on the way
   * (sent before the kernel heard of the cut) must not play again, nor be reported again.
   * @type {Set<string>} */
  const cutItems = new Set();
  /** @type {{key: string, source: string, type: string, events: LogEvent[], row: HTMLElement, detail: HTMLElement | null}[]} */
  let groups = [];
  let eventTotal = 0;
  let micSeq = 0;
  let micState = "off"; // off | starting | on
  let pttDown = false;
  let pttActive = false;
  /** @type {string | null} */
  let currentItem = null;
  /** @type {string | null} */
  let stickyNotice = null;

  /** @param {string | null} text @param {string} [level] */
  function notice(text, level = "info") {
    noticeEl.hidden = !text;
    noticeEl.textContent = text || "";
    noticeEl.className = `rtnb-notice rtnb-${level}`;
  }
  if (capture) {
    stickyNotice = `Microphone unavailable: ${capture}. Text input still works.`;
    notice(stickyNotice, "warning");
  }

  // --- model state -> DOM ---------------------------------------------------------------------
  function renderStatus() {
    const status = model.get("status");
    dot.className = `rtnb-dot rtnb-${status}`;
    statusText.textContent = model.get("status_text") || status;
    backend.textContent = model.get("backend") ? `· ${model.get("backend")}` : "";
  }
  function renderMode() {
    const mode = model.get("mode");
    modeSel.value = mode;
    vadSel.value = mode;
    renderMic();
  }
  function renderMic() {
    const ptt = model.get("mode") === "push_to_talk";
    const muted = model.get("muted");
    root.classList.toggle("rtnb-ptt", ptt);
    micBtn.classList.toggle("rtnb-live", micState === "on" && (!ptt || pttActive));
    const label = capture
      ? "No mic"
      : ptt
        ? pttActive ? "Talking…" : "Hold to talk"
        : micState === "on" ? "Mic on" : micState === "starting" ? "Starting…" : "Mic off";
    micBtn.replaceChildren(iconLabel(capture || (!ptt && micState !== "on") ? "micOff" : "mic", label));
    micBtn.title = ptt ? "Hold (or hold Space) to talk; release to send" : "Click to turn the mic on or off";
    /** @type {HTMLButtonElement} */ (micBtn).disabled = !!capture;
    muteBtn.replaceChildren(iconLabel(muted ? "micOff" : "mic", muted ? "Muted" : "Mute"));
    meter.classList.toggle("rtnb-dim", !!muted);
    muteBtn.classList.toggle("rtnb-on", !!muted);
  }
  function renderSettings() {
    const s = model.get("settings") || {};
    if (document.activeElement !== instructions) instructions.value = s.instructions || "";
    if (s.voice && ![...voiceSel.options].some((o) => o.value === s.voice)) {
      voiceSel.append(h("option", { value: s.voice }, s.voice));
    }
    if (s.voice) voiceSel.value = s.voice;
    const opts = model.get("mic_options") || {};
    for (const [k, cb] of Object.entries(micChecks)) cb.checked = opts[k] !== false;
  }

  // --- conversation ---------------------------------------------------------------------------
  /** @param {Item} it */
  function itemNode(it) {
    const kind = it.type || "message";
    if (kind === "function_call_output") return null;
    if (kind === "function_call") return ui.toolCallNode(it, items.values());
    const role = it.role || "system";
    const played = playedByItem.get(it.id);
    const text = it.text || (it.status === "in_progress" ? "…" : "");
    // Cut once the session asked the server to truncate (confirmed or not yet).
    const cutMs = it.truncated ? it.truncated_ms : it.truncate_requested_ms;
    const isCut = cutMs != null || !!it.truncated;
    const cut = isCut
      ? h("span", { class: "rtnb-cut", title: "The user interrupted: the model was told only this much was heard" },
        `✂ cut at ${fmtSeconds(cutMs ?? played?.played_ms ?? 0)}`)
      : null;
    /** @type {(Node | string)[]} */
    let body = [text || h("em", {}, it.has_audio ? "(audio)" : kind)];
    if (isCut && text && typeof it.heard_text === "string" && text.startsWith(it.heard_text)) {
      body = [it.heard_text,
        h("span", { class: "rtnb-unheard", title: "Never heard: playback was cut here" }, text.slice(it.heard_text.length))];
    }
    return h("div", {
      class: `rtnb-item rtnb-${role}${isCut ? " rtnb-truncated" : ""}`,
      "data-item": it.id,
      "data-played": played ? String(played.played_ms) : undefined,
      "data-played-reason": played ? played.reason : undefined,
    },
      h("span", { class: "rtnb-role" }, role === "assistant" ? "assistant" : role),
      h("span", { class: "rtnb-text" }, ...body),
      cut);
  }

  function renderTranscript() {
    const stick = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40;
    const frag = document.createDocumentFragment();
    for (const id of order) {
      const it = items.get(id);
      if (!it) continue;
      const node = itemNodes.get(id);
      if (node) frag.append(node);
    }
    transcript.replaceChildren(frag);
    emptyTranscript.hidden = order.length > 0;
    if (stick) transcript.scrollTop = transcript.scrollHeight;
    renderTools();
  }

  /** @param {Item[]} changed */
  function applyItems(changed) {
    for (const it of changed) {
      items.set(it.id, it);
      const node = itemNode(it);
      if (node) itemNodes.set(it.id, node);
      else itemNodes.delete(it.id);
      if (it.type === "function_call_output") {
        // Re-render the call this output belongs to.
        for (const other of items.values()) {
          if (other.type === "function_call" && other.call_id === it.call_id) {
            const n = itemNode(other);
            if (n) itemNodes.set(other.id, n);
          }
        }
      }
    }
    for (const id of [...items.keys()]) {
      if (!order.includes(id)) {
        items.delete(id);
        itemNodes.delete(id);
      }
    }
    renderTranscript();
  }

  function renderTools() {
    const calls = order.map((id) => items.get(id)).filter((it) => it && it.type === "function_call");
    if (!calls.length) {
      toolList.replaceChildren(h("div", { class: "rtnb-empty" }, "No tool calls yet."));
      return;
    }
    toolList.replaceChildren(...calls.map((c) => {
      const call = /** @type {Item} */ (c);
      const out = [...items.values()].find((o) => o.type === "function_call_output" && o.call_id === call.call_id);
      const output = call.output ?? (out ? out.output : null);
      return h("div", { class: "rtnb-toolcard" },
        h("div", { class: "rtnb-toolname" }, call.name || "?", h("span", { class: "rtnb-muted" }, ` ${call.call_id || ""}`)),
        h("div", { class: "rtnb-label" }, "arguments"), h("pre", {}, pretty(call.arguments ?? "")),
        h("div", { class: "rtnb-label" }, "result"),
        output != null ? h("pre", {}, pretty(output)) : h("div", { class: "rtnb-pending" }, "running…"));
    }));
  }

  /** @param {any} stats */
  function renderStats(stats) {
    const parts = [];
    const tokens = stats.tokens || {};
    if (tokens.total_tokens) parts.push(`${tokens.total_tokens.toLocaleString()} tokens`);
    parts.push(`$${(stats.cost || 0).toFixed(4)}`);
    const turns = stats.turns || [];
    const last = [...turns].reverse().find((t) => t.latency_ms != null);
    if (last) parts.push(`last turn ${Math.round(last.latency_ms)} ms`);
    statsEl.textContent = parts.join(" · ");
    turnsTable.replaceChildren(
      h("tr", {}, h("th", {}, "turn"), h("th", {}, "latency (end of speech → first audio)")),
      ...turns.map((/** @type {any} */ t) =>
        h("tr", {}, h("td", {}, String(t.index)), h("td", {}, t.latency_ms == null ? "–" : `${Math.round(t.latency_ms)} ms`))),
    );
    if (!turns.length) turnsTable.append(h("tr", {}, h("td", { colspan: 2, class: "rtnb-empty" }, "No turns yet.")));
  }

  // --- event log ------------------------------------------------------------------------------
  /** @param {{source: string, type: string}} g */
  function visible(g) {
    const f = filterInput.value.trim().toLowerCase();
    const s = sourceSel.value;
    return (!f || g.type.toLowerCase().includes(f)) && (!s || g.source === s);
  }
  const ARROWS = /** @type {Record<string, string>} */ ({ client: "→", server: "←", local: "•" });

  /** @param {typeof groups[number]} g */
  function groupRow(g) {
    const first = g.events[0];
    const last = g.events[g.events.length - 1];
    g.row.replaceChildren(
      h("span", { class: `rtnb-arrowcol rtnb-src-${g.source}`, title: g.source }, ARROWS[g.source] || "?"),
      h("span", { class: "rtnb-t" }, fmtSeconds(first.t_ms)),
      h("span", { class: "rtnb-type" }, g.type),
      g.events.length > 1 ? h("span", { class: "rtnb-badge" }, `×${g.events.length}`) : null,
      last.item_id ? h("span", { class: "rtnb-muted" }, last.item_id) : null,
    );
    if (g.detail) g.detail.textContent = detailText(g);
  }
  /** @param {typeof groups[number]} g */
  function detailText(g) {
    const last = g.events[g.events.length - 1];
    const head = g.events.length > 1
      ? `// ${g.events.length} events, seq ${g.events[0].seq}–${last.seq}; the last one:\n`
      : `// seq ${last.seq}, t ${last.t_ms} ms\n`;
    return head + JSON.stringify(last.data, null, 2);
  }

  /** @param {LogEvent[]} evs */
  function addEvents(evs) {
    const stick = eventList.scrollHeight - eventList.scrollTop - eventList.clientHeight < 40;
    for (const ev of evs) {
      const key = `${ev.source} ${ev.type}`;
      const last = groups[groups.length - 1];
      if (last && last.key === key && COLLAPSIBLE.test(ev.type)) {
        last.events.push(ev);
        groupRow(last);
      } else {
        const row = h("div", { class: "rtnb-event" });
        /** @type {typeof groups[number]} */
        const g = { key, source: ev.source, type: ev.type, events: [ev], row, detail: null };
        row.addEventListener("click", () => {
          if (g.detail) {
            g.detail.remove();
            g.detail = null;
          } else {
            g.detail = h("pre", { class: "rtnb-json" });
            g.detail.textContent = detailText(g);
            row.after(g.detail);
          }
        });
        groupRow(g);
        row.hidden = !visible(g);
        groups.push(g);
        eventList.append(row);
      }
      eventTotal++;
    }
    while (eventTotal > MAX_EVENTS && groups.length > 1) {
      const g = /** @type {typeof groups[number]} */ (groups.shift());
      eventTotal -= g.events.length;
      g.row.remove();
      g.detail?.remove();
    }
    eventCount.textContent = `${eventTotal} events`;
    if (stick) eventList.scrollTop = eventList.scrollHeight;
  }
  function refilter() {
    for (const g of groups) {
      g.row.hidden = !visible(g);
      if (g.detail) g.detail.hidden = g.row.hidden;
    }
  }

  // --- audio ----------------------------------------------------------------------------------
  /** @param {any} m a message from a worklet */
  function onWorklet(m) {
    switch (m.type) {
      case "chunk": {
        setLevel(m.rms);
        const pcm = model.get("muted") ? new ArrayBuffer(m.pcm.byteLength) : m.pcm;
        send({ type: "mic", seq: micSeq++, t: epochMs() }, [pcm]);
        break;
      }
      case "level":
        setLevel(m.rms);
        break;
      case "started":
        currentItem = m.itemId;
        send({ type: "playback_started", item_id: m.itemId, t: epochMs() + engine.outputLatencyMs() });
        break;
      case "finished":
        playedReport(m.itemId, m.playedMs, "finished");
        if (currentItem === m.itemId) currentItem = null;
        playing.textContent = "";
        break;
      case "progress":
        playing.textContent = `▶ ${fmtSeconds(m.playedMs)}`;
        break;
      case "error":
        report("error", m.message);
        break;
      default:
        report("warning", `unknown worklet message ${m.type}`);
    }
  }

  let levelShown = 0;
  /** @param {number} rms */
  function setLevel(rms) {
    const pos = audioLib ? audioLib.meterPosition(rms) : Math.min(1, rms * 4);
    // Fast attack, slow release, like a VU meter.
    levelShown = pos > levelShown ? pos : levelShown * 0.7 + pos * 0.3;
    meterFill.style.width = `${(levelShown * 100).toFixed(1)}%`;
  }

  /** @param {string} itemId @param {number} ms @param {string} reason */
  function playedReport(itemId, ms, reason) {
    const prev = playedByItem.get(itemId);
    if (prev && prev.reason !== "finished") return; // cut and reported already: one report per cut
    const played = Math.round(ms * 10) / 10;
    playedByItem.set(itemId, { played_ms: played, reason });
    send({ type: "played", item_id: itemId, played_ms: played, reason });
    const it = items.get(itemId);
    const node = it && itemNode(it);
    if (it && node) {
      itemNodes.set(itemId, node);
      renderTranscript();
    }
  }

  /** Flush playback now and report what was heard. @param {"interrupted" | "stopped"} reason */
  async function flushPlayback(reason) {
    if (currentItem) cutItems.add(currentItem);
    const flushed = await engine.flush();
    playing.textContent = "";
    currentItem = null;
    for (const f of flushed) {
      cutItems.add(f.itemId);
      playedReport(f.itemId, f.playedMs, reason);
    }
  }

  async function gesture() {
    try {
      await engine.resume();
      if (stickyNotice === null) notice(null);
    } catch (err) {
      report("error", `audio output could not start: ${err}`);
    }
  }

  /** @param {unknown} err */
  function micFailed(err) {
    const e = /** @type {any} */ (err);
    const denied = e && (e.name === "NotAllowedError" || e.name === "SecurityError");
    const state = denied ? "denied" : "error";
    const why = denied
      ? "the browser (or the system) denied microphone access; allow it in the address bar's site settings"
      : e && e.name === "NotFoundError" ? "no microphone was found" : `${e && e.message ? e.message : e}`;
    stickyNotice = `Microphone unavailable: ${why}. Text input still works.`;
    notice(stickyNotice, "warning");
    micState = "off";
    send({ type: "mic_state", state, reason: why });
    renderMic();
  }

  async function micOn() {
    micState = "starting";
    renderMic();
    try {
      await engine.openMic(model.get("mic_options") || {});
    } catch (err) {
      micFailed(err);
      return false;
    }
    micState = "on";
    send({ type: "mic_state", state: "on", reason: "" });
    renderMic();
    return true;
  }

  async function micOff() {
    await engine.closeMic();
    micState = "off";
    pttActive = false;
    send({ type: "mic_state", state: "off", reason: "user" });
    setLevel(0);
    renderMic();
  }

  async function toggleMic() {
    await gesture();
    if (micState === "on") {
      await micOff();
    } else if (micState === "off" && (await micOn())) {
      engine.startCapture();
    }
  }

  async function pttStart() {
    if (pttDown || capture) return;
    pttDown = true;
    await gesture();
    if (model.get("muted")) {
      notice("The mic is muted: unmute to talk.", "info");
      return;
    }
    if (micState !== "on" && !(await micOn())) return;
    if (!pttDown) return; // released while the mic was opening
    await flushPlayback("interrupted");
    send({ type: "ptt", action: "start" });
    engine.startCapture();
    pttActive = true;
    renderMic();
  }

  async function pttEnd() {
    if (!pttDown) return;
    pttDown = false;
    if (!pttActive) return;
    pttActive = false;
    renderMic();
    await engine.stopCapture(); // the last chunk is sent before "end"
    send({ type: "ptt", action: "end" });
  }

  // --- controls -------------------------------------------------------------------------------
  const isPtt = () => model.get("mode") === "push_to_talk";
  micBtn.addEventListener("click", () => {
    if (!isPtt()) toggleMic();
  });
  micBtn.addEventListener("pointerdown", (e) => {
    if (isPtt() && e.button === 0) {
      micBtn.setPointerCapture(e.pointerId);
      pttStart();
    }
  });
  micBtn.addEventListener("pointerup", () => {
    if (isPtt()) pttEnd();
  });
  micBtn.addEventListener("pointercancel", () => {
    if (isPtt()) pttEnd();
  });
  /** @param {KeyboardEvent} e */
  const typing = (e) => e.target instanceof HTMLElement && /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName);
  root.addEventListener("keydown", (e) => {
    if (e.code === "Space" && isPtt() && !typing(e)) {
      e.preventDefault();
      e.stopPropagation(); // keep JupyterLab's command mode from seeing it
      if (!e.repeat) pttStart();
    }
  });
  root.addEventListener("keyup", (e) => {
    if (e.code === "Space" && isPtt() && !typing(e)) {
      e.preventDefault();
      e.stopPropagation();
      pttEnd();
    }
  });
  muteBtn.addEventListener("click", () => {
    model.set("muted", !model.get("muted"));
    model.save_changes();
  });
  stopBtn.addEventListener("click", async () => {
    await gesture();
    send({ type: "stop" });
    await flushPlayback("stopped");
  });
  modeSel.addEventListener("change", () => send({ type: "update", mode: modeSel.value }));
  filterInput.addEventListener("input", refilter);
  sourceSel.addEventListener("change", refilter);
  async function sendText() {
    const text = textInput.value.trim();
    if (!text) return;
    textInput.value = "";
    await gesture();
    await flushPlayback("interrupted");
    send({ type: "text", text });
  }
  sendBtn.addEventListener("click", sendText);
  textInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      sendText();
    }
    e.stopPropagation(); // typing here is not a notebook shortcut
  });
  instructions.addEventListener("keydown", (e) => e.stopPropagation());
  // Only what the user changed: the API refuses a whole session.update that names a new voice
  // once the assistant has spoken, so resending the voice would also lose the other edits.
  function applySettings() {
    const s = model.get("settings") || {};
    /** @type {Record<string, string>} */
    const changed = {};
    if (instructions.value !== (s.instructions || "")) changed.instructions = instructions.value;
    if (voiceSel.value && voiceSel.value !== s.voice) changed.voice = voiceSel.value;
    if (vadSel.value !== model.get("mode")) changed.mode = vadSel.value;
    if (Object.keys(changed).length) send({ type: "update", ...changed });
    else notice("Nothing to apply: these are the settings in effect.", "info");
  }
  function onMicOption() {
    /** @type {Record<string, boolean>} */
    const opts = {};
    for (const [k, cb] of Object.entries(micChecks)) opts[k] = cb.checked;
    model.set("mic_options", opts);
    model.save_changes();
    engine.applyMicOptions(opts).catch((err) => report("warning", `mic options not applied live: ${err}`));
  }
  root.addEventListener("pointerdown", () => {
    if (engine.ctx && engine.suspended) gesture();
  });

  // --- kernel -> browser ----------------------------------------------------------------------
  /** @param {any} msg @param {DataView[]} buffers */
  async function onMessage(msg, buffers) {
    switch (msg.type) {
      case "snapshot":
        items.clear();
        itemNodes.clear();
        order = msg.order;
        applyItems(msg.items);
        groups.forEach((g) => g.row.remove());
        groups = [];
        eventTotal = 0;
        addEvents(msg.events);
        renderStats(msg.stats);
        break;
      case "items":
        order = msg.order;
        applyItems(msg.items);
        break;
      case "events":
        addEvents(msg.events);
        break;
      case "stats":
        renderStats(msg);
        break;
      case "audio":
        if (msg.view !== view || !buffers.length || cutItems.has(msg.item_id)) break;
        await engine.push(msg.item_id, buffers[0]);
        if (engine.suspended) notice("Click anywhere in this widget to hear the assistant (the browser blocks autoplay).", "info");
        break;
      case "audio_done":
        if (msg.view === view && !cutItems.has(msg.item_id)) await engine.end(msg.item_id);
        break;
      case "flush":
        if (msg.view === view) await flushPlayback("interrupted");
        break;
      case "notice":
        notice(msg.text, msg.level);
        if (msg.level !== "error") setTimeout(() => notice(stickyNotice, "warning"), 6000);
        break;
      default:
        report("warning", `unknown message type from the kernel: ${msg.type}`);
    }
  }
  /** @param {any} msg @param {DataView[]} buffers */
  const onCustom = (msg, buffers) => {
    onMessage(msg, buffers || []).catch((err) => report("error", `handling ${msg && msg.type}: ${err}`));
  };

  model.on("msg:custom", onCustom);
  model.on("change:status", renderStatus);
  model.on("change:status_text", renderStatus);
  model.on("change:backend", renderStatus);
  model.on("change:mode", renderMode);
  model.on("change:muted", renderMic);
  model.on("change:settings", renderSettings);
  model.on("change:mic_options", renderSettings);
  renderStatus();
  renderMode();
  renderSettings();
  renderStats({ cost: 0, tokens: {}, turns: [] });

  // Playback needs no gesture when the page allows autoplay; otherwise the first click resumes it.
  engine.context().catch((err) => {
    const why = err && err.message ? err.message : String(err);
    // Keep what the mic notice says (often the same cause): both matter to the user.
    stickyNotice = capture
      ? `Microphone unavailable: ${capture}. Audio output unavailable too: ${why}. Text input still works.`
      : `Audio output unavailable: ${why}. Text still works.`;
    notice(stickyNotice, "warning");
    report("error", `AudioContext/worklet failed: ${err}`);
  });
  send({ type: "ready" });

  return () => {
    model.off("msg:custom", onCustom);
    model.off("change:status", renderStatus);
    model.off("change:status_text", renderStatus);
    model.off("change:backend", renderStatus);
    model.off("change:mode", renderMode);
    model.off("change:muted", renderMic);
    model.off("change:settings", renderSettings);
    model.off("change:mic_options", renderSettings);
    if (micState === "on") send({ type: "mic_state", state: "off", reason: "view removed" });
    engine.destroy();
  };
}

export default { render };
