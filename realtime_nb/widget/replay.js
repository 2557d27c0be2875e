// realtime_nb replay view: plain ESM, no build step (loaded by anywidget from replay.py).
//
// The kernel half (replay.py) documents the message catalogue. The browser holds the overview
// (peaks of both tracks, VAD segments, truncations) and asks for what the playhead needs: the
// conversation state at t, the event-list window around t, and audio windows of WINDOW_S seconds
// (the one under the playhead and the next, prefetched while playing), never the whole session.
// The exported helpers at the top are pure (no DOM): node --test tests/js/ checks them.
// The DOM helpers shared with the live widget live in ui.js (the `_ui_js` trait).

/** @typedef {{get(k: string): any, set(k: string, v: any): void, save_changes(): void,
 *   on(e: string, f: Function): void, off(e?: string, f?: Function): void,
 *   send(msg: any, callbacks?: any, buffers?: (ArrayBuffer | ArrayBufferView)[]): void}} Model */
/** @typedef {{id: string, type?: string, role?: string, status?: string, text?: string | null,
 *   heard_text?: string, truncated?: boolean, truncated_ms?: number, truncate_requested_ms?: number,
 *   played_ms?: number, has_audio?: boolean, name?: string, call_id?: string, arguments?: string,
 *   output?: string}} Item */

/** Audio windows kept in memory: ~16 x 4 s x 2 tracks of Float32 is 12 MB at most. */
export const MAX_CACHED_WINDOWS = 16;
/** Windows fetched ahead of the playhead while playing (the one under it, plus this many). */
export const PREFETCH_WINDOWS = 2;
/** While playing, the transcript follows the playhead at this interval (ms). */
const STATE_EVERY_MS = 200;
/** The scheduler's tick (ms): schedules windows, prefetches, moves the playhead. */
const TICK_MS = 50;
/** Seconds before the event-list window's edge at which a new one is asked for. */
const EVENT_MARGIN_S = 5;
const SPEEDS = [1, 2];

/** Index of the audio window holding time t. @param {number} t @param {number} windowS */
export function windowIndex(t, windowS) {
  return Math.max(0, Math.floor(t / windowS + 1e-9));
}

/**
 * Window indices to have in memory for a playhead at t: the one under it, then `ahead` more
 * (none past the end).
 * @param {number} t @param {number} windowS @param {number} duration @param {number} ahead
 * @returns {number[]}
 */
export function windowsFor(t, windowS, duration, ahead) {
  const first = windowIndex(t, windowS);
  const last = Math.max(first, Math.ceil(duration / windowS) - 1);
  const out = [];
  for (let k = first; k <= Math.min(first + ahead, last); k++) out.push(k);
  return out;
}

/**
 * When and from where to start a window's buffer so it lines up with the playhead clock.
 * The playhead is at `origin` (timeline s) at context time `startCtx` and moves `speed` timeline
 * seconds per context second. Returns null when the window is already over.
 * @param {number} windowStart timeline s @param {number} windowLen s
 * @param {number} origin @param {number} startCtx @param {number} speed @param {number} now context time
 * @returns {{when: number, offset: number} | null}
 */
export function scheduleWindow(windowStart, windowLen, origin, startCtx, speed, now) {
  const due = startCtx + (windowStart - origin) / speed; // context time the window should start
  const when = Math.max(due, now);
  const offset = origin + (when - startCtx) * speed - windowStart;
  if (offset >= windowLen) return null;
  return { when, offset: Math.max(0, offset) };
}

/** Timeline seconds under x pixels of a width-px timeline. @param {number} x @param {number} width @param {number} duration */
export function timeAtX(x, width, duration) {
  if (!(width > 0)) return 0;
  return Math.min(duration, Math.max(0, (x / width) * duration));
}

/** "mm:ss.s" (or "h:mm:ss.s"). @param {number} s */
export function clock(s) {
  const t = Math.max(0, s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = (t % 60).toFixed(1).padStart(4, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${String(m).padStart(2, "0")}:${sec}`;
}

/** PCM16 LE bytes as float samples. @param {DataView} view @returns {Float32Array} */
export function pcm16ToFloat32(view) {
  const n = view.byteLength >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true) / 32768;
  return out;
}

/**
 * Index of the last row at or before t (rows sorted by time; -1 when none).
 * @param {{1: number}[]} rows @param {number} t
 */
export function lastRowAt(rows, t) {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (rows[mid][1] <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

// --- DOM ------------------------------------------------------------------------------------------

/**
 * Import ui.js (the DOM helpers shared with the live widget) from its source, which arrives as
 * the `_ui_js` trait: a Blob URL, as widget.js loads audio.js, so no HTTP route is needed.
 * @param {string} source
 * @returns {Promise<typeof import("./ui.js")>}
 */
async function importUi(source) {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    return await import(/* webpackIgnore: true */ url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

/** @param {any} v */
function pretty(v) {
  return JSON.stringify(v, null, 2);
}

const ARROWS = /** @type {Record<string, string>} */ ({ client: "→", server: "←", local: "•" });

/** @param {{model: Model, el: HTMLElement}} ctx */
async function render({ model, el }) {
  const view = Math.random().toString(36).slice(2, 14);
  const t0 = performance.now();
  // Without ui.js there is no DOM to build: a failure here fails the render, and anywidget shows it.
  const { h, makeTabs, toolCallNode } = await importUi(model.get("_ui_js"));
  let reqSeq = 0;
  /** @param {any} msg */
  const send = (msg) => model.send({ ...msg, view });
  /** @param {string} level @param {string} message */
  const report = (level, message) => {
    console.warn(`realtime_nb replay: ${message}`);
    send({ type: "log", level, message });
  };

  // --- DOM ----------------------------------------------------------------------------------
  const title = h("span", { class: "rtnb-title" }, "Replay");
  const metaEl = h("span", { class: "rtnb-muted" });
  const statsEl = h("span", { class: "rtnb-stats" });
  const header = h("div", { class: "rtnb-header" }, title, metaEl, statsEl);

  const playBtn = h("button", { class: "rtnb-btn rtnb-play", type: "button", title: "Play / pause (Space)" }, "▶ Play");
  const speedBtns = SPEEDS.map((s) =>
    h("button", { class: "rtnb-btn rtnb-speed", type: "button", "data-speed": s, title: `Play at ${s}×` }, `${s}×`));
  const timeEl = h("span", { class: "rtnb-time" }, "--:--");
  const userCb = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", class: "rtnb-track-user" }));
  const asstCb = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", class: "rtnb-track-assistant" }));
  userCb.checked = true;
  asstCb.checked = true;
  const controls = h("div", { class: "rtnb-controls" }, playBtn, ...speedBtns, timeEl,
    h("label", { class: "rtnb-trackopt" }, userCb, "user"),
    h("label", { class: "rtnb-trackopt" }, asstCb, "assistant"));

  const canvas = /** @type {HTMLCanvasElement} */ (h("canvas", { class: "rtnb-canvas", title: "Click to seek" }));
  const timeline = h("div", { class: "rtnb-timeline" }, canvas);
  const legend = h("div", { class: "rtnb-timeline-legend" },
    h("span", {}, h("span", { class: "rtnb-swatch", style: "background: var(--rtnb-accent)" }), "user"),
    h("span", {}, h("span", { class: "rtnb-swatch", style: "background: var(--rtnb-ok)" }), "assistant (as heard)"),
    h("span", {}, h("span", { class: "rtnb-swatch", style: "background: var(--rtnb-user)" }), "speech (VAD)"),
    h("span", {}, h("span", { class: "rtnb-swatch", style: "background: var(--rtnb-err)" }), "truncation"));
  const noticeEl = h("div", { class: "rtnb-notice", hidden: true });

  const tabNames = ["Transcript", "Events"];
  const { tabs, panes, show } = makeTabs(tabNames, (name) => {
    if (name === "Events" && typeof buildRows === "function") buildRows();
  });
  const transcript = h("div", { class: "rtnb-transcript" });
  const emptyTranscript = h("div", { class: "rtnb-empty" }, "Nothing said yet at this point.");
  panes.Transcript.append(emptyTranscript, transcript);
  const filterInput = /** @type {HTMLInputElement} */ (
    h("input", { class: "rtnb-filter", type: "search", placeholder: "Filter by type (e.g. response.)" }));
  const eventCount = h("span", { class: "rtnb-count" });
  const eventList = h("div", { class: "rtnb-events" });
  panes.Events.append(h("div", { class: "rtnb-toolbar" }, filterInput, eventCount), eventList);

  const root = h("div", { class: "rtnb-root rtnb-replay", tabindex: 0, "data-status": "loading" },
    header, controls, timeline, legend, noticeEl, tabs, ...tabNames.map((n) => panes[n]));
  el.append(root);
  show("Transcript");

  /** @param {string | null} text @param {string} [level] */
  function notice(text, level = "info") {
    noticeEl.hidden = !text;
    noticeEl.textContent = text || "";
    noticeEl.className = `rtnb-notice rtnb-${level}`;
  }

  // --- state ----------------------------------------------------------------------------------
  const ds = root.dataset; // measurements for tests and the benchmark live here
  let duration = 0;
  const windowS = model.get("window_s") || 4;
  const rate = model.get("rate") || 24000;
  /** @type {{bins: number, peaks: Float32Array[], vad: any[], truncations: any[], items: any[]} | null} */
  let overview = null;
  /** @type {HTMLCanvasElement | null} */
  let waveform = null; // the static picture; the playhead is drawn over it
  let position = Math.max(0, model.get("position_s") || 0);
  let speed = SPEEDS.includes(model.get("speed")) ? model.get("speed") : 1;
  let playing = false;
  /** @type {Map<string, Item>} */
  const items = new Map();
  /** @type {string[]} */
  let order = [];
  /** @type {any[]} rows [seq, t_s, source, type, item_id] */
  let rows = [];
  let rowsFrom = Infinity;
  let rowsTo = -Infinity;
  /** @type {HTMLElement[]} */
  let rowEls = [];
  let currentRow = -2;
  let rowsBuilt = false;
  let lastStateReq = 0;
  let lastStateAppliedReq = 0;
  let lastStateT = -1;
  let lastStateAsked = -1;
  let lastStateAskedAt = 0;
  /** @type {{req: number, t: number, at: number, state: boolean, audio: boolean} | null} */
  let seeking = null;
  let audioBytes = 0;
  let audioMsgs = 0;
  /** @type {Map<number, {user: Float32Array, assistant: Float32Array}>} */
  const windows = new Map();
  /** @type {Map<number, number>} req -> window index */
  const pendingAudio = new Map();
  /** @type {Map<number, string>} req -> seq, for event details */
  const pendingDetail = new Map();

  // Audio output
  /** @type {AudioContext | null} */
  let ctx = null;
  /** @type {{user: GainNode, assistant: GainNode} | null} */
  let gains = null;
  let origin = 0; // timeline s at startCtx
  let startCtx = 0;
  /** @type {Map<number, AudioBufferSourceNode[]>} */
  const scheduled = new Map();
  /** @type {ReturnType<typeof setInterval> | null} */
  let ticker = null;

  // --- overview / timeline --------------------------------------------------------------------
  function canvasWidth() {
    return Math.max(200, Math.round(timeline.clientWidth || el.clientWidth || 800));
  }
  const LANE = { ruler: 14, user: [16, 54], assistant: [56, 94] };

  /** @param {string} name */
  function cssVar(name) {
    return getComputedStyle(root).getPropertyValue(name).trim() || "#888";
  }

  function drawWaveform() {
    if (!overview) return;
    const w = canvasWidth();
    const dpr = window.devicePixelRatio || 1;
    const off = document.createElement("canvas");
    off.width = Math.round(w * dpr);
    off.height = Math.round(96 * dpr);
    const g = /** @type {CanvasRenderingContext2D} */ (off.getContext("2d"));
    g.scale(dpr, dpr);
    const x = (/** @type {number} */ t) => (duration ? (t / duration) * w : 0);
    // VAD segments: bands behind the user lane.
    g.fillStyle = cssVar("--rtnb-user");
    for (const [a, b] of overview.vad) {
      const x0 = x(a);
      const x1 = x(b == null ? duration : b);
      g.fillRect(x0, LANE.user[0], Math.max(1, x1 - x0), LANE.user[1] - LANE.user[0]);
    }
    /** @param {Float32Array} lo @param {Float32Array} hi @param {number[]} lane @param {string} color */
    const peaks = (lo, hi, lane, color) => {
      const mid = (lane[0] + lane[1]) / 2;
      const half = (lane[1] - lane[0]) / 2;
      g.fillStyle = color;
      const n = lo.length;
      for (let i = 0; i < n; i++) {
        const px = (i / n) * w;
        const y0 = mid - Math.min(1, hi[i]) * half;
        const y1 = mid - Math.max(-1, lo[i]) * half;
        g.fillRect(px, y0, Math.max(1, w / n), Math.max(1, y1 - y0));
      }
    };
    const [umin, umax, amin, amax] = overview.peaks;
    peaks(umin, umax, LANE.user, cssVar("--rtnb-accent"));
    peaks(amin, amax, LANE.assistant, cssVar("--rtnb-ok"));
    // Truncations: where the listener stopped hearing an assistant item.
    g.fillStyle = cssVar("--rtnb-err");
    for (const [t] of overview.truncations) {
      if (t == null) continue;
      g.fillRect(x(t) - 1, LANE.assistant[0] - 2, 2, LANE.assistant[1] - LANE.assistant[0] + 4);
      g.beginPath();
      g.moveTo(x(t) - 4, LANE.assistant[0] - 3);
      g.lineTo(x(t) + 4, LANE.assistant[0] - 3);
      g.lineTo(x(t), LANE.assistant[0] + 3);
      g.fill();
    }
    // Ruler: a tick every "nice" interval.
    g.fillStyle = cssVar("--rtnb-fg2");
    g.font = "10px sans-serif";
    const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
    const step = steps.find((s) => (s / Math.max(duration, 1)) * w >= 70) || 3600;
    for (let t = 0; t <= duration; t += step) {
      g.fillRect(x(t), 0, 1, 4);
      g.fillText(clock(t).replace(/\.\d$/, ""), x(t) + 2, 11);
    }
    waveform = off;
    canvas.width = off.width;
    canvas.height = off.height;
    drawPlayhead();
  }

  function drawPlayhead() {
    const g = canvas.getContext("2d");
    if (!g) return;
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, canvas.width, canvas.height);
    if (waveform) g.drawImage(waveform, 0, 0);
    if (!duration) return;
    const px = (position / duration) * canvas.width;
    g.fillStyle = cssVar("--rtnb-fg");
    g.fillRect(Math.round(px) - 1, 0, 2, canvas.height);
  }

  function renderTime() {
    timeEl.textContent = `${clock(position)} / ${clock(duration)}`;
    ds.position = String(position);
  }

  // --- transcript -----------------------------------------------------------------------------
  /** @type {Map<string, HTMLElement>} */
  const itemNodes = new Map();
  let scrollQueued = false;

  /** @param {Item} it */
  function itemNode(it) {
    const kind = it.type || "message";
    if (kind === "function_call_output") return null;
    if (kind === "function_call") return toolCallNode(it, items.values());
    const role = it.role || "system";
    const text = it.text || "";
    const cutMs = it.truncated ? it.truncated_ms : it.truncate_requested_ms;
    const cut = cutMs != null;
    /** @type {(Node | string)[]} */
    let body;
    if (!text) {
      body = [h("em", {}, it.status === "in_progress" ? "…" : it.has_audio ? "(audio)" : kind)];
    } else if (cut && typeof it.heard_text === "string" && text.startsWith(it.heard_text)) {
      body = [it.heard_text, h("span", { class: "rtnb-unheard", title: "Never heard: playback was cut here" }, text.slice(it.heard_text.length))];
    } else {
      body = [text];
    }
    return h("div", {
      class: `rtnb-item rtnb-${role}${cut ? " rtnb-truncated" : ""}`,
      "data-item": it.id,
    },
      h("span", { class: "rtnb-role" }, role),
      h("span", { class: "rtnb-text" }, ...body),
      cut ? h("span", { class: "rtnb-cut", title: "Interrupted: the model was told only this much was heard" },
        `✂ cut at ${(Number(cutMs) / 1000).toFixed(2)} s`) : null);
  }

  /** @param {any} msg a `state` message */
  function applyState(msg) {
    if (msg.full) {
      items.clear();
      itemNodes.clear();
    }
    order = msg.order;
    for (const it of /** @type {Item[]} */ (msg.items)) {
      items.set(it.id, it);
      const node = itemNode(it);
      if (node) itemNodes.set(it.id, node);
      else itemNodes.delete(it.id);
    }
    const keep = new Set(order);
    for (const id of [...items.keys()]) {
      if (!keep.has(id)) {
        items.delete(id);
        itemNodes.delete(id);
      }
    }
    const frag = document.createDocumentFragment();
    for (const id of order) {
      const n = itemNodes.get(id);
      if (n) frag.append(n);
    }
    transcript.replaceChildren(frag);
    emptyTranscript.hidden = order.length > 0;
    // The latest item is the one at the playhead. Scrolling reads the layout: do it when the
    // frame is laid out anyway, not here (a forced layout of the whole notebook).
    if (!scrollQueued) {
      scrollQueued = true;
      requestAnimationFrame(() => {
        scrollQueued = false;
        transcript.scrollTop = transcript.scrollHeight;
      });
    }
    const u = msg.usage || {};
    statsEl.textContent = `${order.length} items · ${msg.turns} turns${u.total_tokens ? ` · ${u.total_tokens.toLocaleString()} tokens` : ""} at ${clock(msg.t)}`;
    lastStateT = msg.t;
    ds.stateT = String(msg.t);
    ds.stateReq = String(msg.req);
    if (msg.events) applyEvents(msg.events);
  }

  // --- event list -----------------------------------------------------------------------------
  /** @param {{from_s: number, to_s: number, rows: any[]}} ev */
  function applyEvents(ev) {
    rows = ev.rows;
    rowsFrom = ev.from_s;
    rowsTo = ev.to_s;
    rowsBuilt = false;
    buildRows();
  }

  /** Make the rows' elements, only while the Events tab shows (seeking with it hidden is cheaper). */
  function buildRows() {
    if (rowsBuilt || panes.Events.hidden) return;
    rowsBuilt = true;
    rowEls = rows.map((r) => {
      const [seq, t, source, type, itemId] = r;
      const row = h("div", { class: "rtnb-event", "data-seq": seq },
        h("span", { class: `rtnb-arrowcol rtnb-src-${source}`, title: source }, ARROWS[source] || "?"),
        h("span", { class: "rtnb-t" }, clock(t)),
        h("span", { class: "rtnb-type" }, type),
        itemId ? h("span", { class: "rtnb-muted" }, itemId) : null);
      row.addEventListener("click", () => toggleDetail(row, seq));
      return row;
    });
    eventList.replaceChildren(...rowEls);
    currentRow = -2;
    refilter();
    syncEvents();
  }

  /** @param {HTMLElement} row @param {number} seq */
  function toggleDetail(row, seq) {
    const next = row.nextElementSibling;
    if (next && next.classList.contains("rtnb-json")) {
      next.remove();
      return;
    }
    const pre = h("pre", { class: "rtnb-json", "data-seq": seq }, "…");
    row.after(pre);
    const req = ++reqSeq;
    pendingDetail.set(req, String(seq));
    send({ type: "get_event", req, seq });
  }

  function refilter() {
    if (!rowsBuilt) return;
    const f = filterInput.value.trim().toLowerCase();
    let shown = 0;
    rows.forEach((r, i) => {
      const hide = !!f && !String(r[3]).toLowerCase().includes(f);
      rowEls[i].hidden = hide;
      if (!hide) shown++;
    });
    eventCount.textContent = `${shown} events from ${clock(Math.max(0, rowsFrom))} to ${clock(Math.min(duration, rowsTo))} (audio events on the timeline)`;
  }

  /** Mark past, current and future rows for the playhead; scroll the current one into view. */
  function syncEvents() {
    if (!rowsBuilt) return;
    const cur = lastRowAt(rows, position);
    if (cur === currentRow) return;
    const lo = Math.min(cur, currentRow);
    const hi = Math.max(cur, currentRow);
    if (currentRow === -2) {
      rowEls.forEach((r, i) => {
        r.classList.toggle("rtnb-future", i > cur);
        r.classList.toggle("rtnb-current", i === cur);
      });
    } else {
      for (let i = Math.max(0, lo); i <= hi && i < rowEls.length; i++) {
        rowEls[i].classList.toggle("rtnb-future", i > cur);
        rowEls[i].classList.toggle("rtnb-current", i === cur);
      }
    }
    currentRow = cur;
    const r = rowEls[Math.max(0, cur)];
    if (r && !panes.Events.hidden) {
      eventList.scrollTop = Math.max(0, r.offsetTop - eventList.offsetTop - eventList.clientHeight / 2);
    }
  }

  // --- requests -------------------------------------------------------------------------------
  /** Whether the event list holds the window around t (with a margin). @param {number} t */
  function eventsCover(t) {
    const lo = rowsFrom <= 0 ? rowsFrom : rowsFrom + EVENT_MARGIN_S;
    const hi = rowsTo >= duration ? rowsTo : rowsTo - EVENT_MARGIN_S;
    return t >= lo && t <= hi;
  }

  /** @param {number} t @param {boolean} full */
  function askState(t, full = false) {
    const req = ++reqSeq;
    send({ type: "get_state", req, t, events: !eventsCover(t), full });
    lastStateReq = req;
    lastStateAsked = t;
    lastStateAskedAt = performance.now();
    return req;
  }

  /** @param {number} k */
  function fetchWindow(k) {
    if (windows.has(k) || [...pendingAudio.values()].includes(k)) return;
    if (k * windowS >= duration) return;
    const req = ++reqSeq;
    pendingAudio.set(req, k);
    send({ type: "get_audio", req, start_s: k * windowS, duration_s: windowS });
  }

  function evictWindows() {
    if (windows.size <= MAX_CACHED_WINDOWS) return;
    const here = windowIndex(position, windowS);
    const far = [...windows.keys()].sort((a, b) => Math.abs(b - here) - Math.abs(a - here));
    for (const k of far) {
      if (windows.size <= MAX_CACHED_WINDOWS) break;
      if (!scheduled.has(k)) windows.delete(k);
    }
  }

  function checkSeekDone() {
    if (!seeking) return;
    const k = windowIndex(seeking.t, windowS);
    seeking.audio = windows.has(k) || k * windowS >= duration;
    if (seeking.state && seeking.audio) {
      const at = seeking.at;
      ds.seekMs = (performance.now() - at).toFixed(1);
      ds.seekT = String(seeking.t);
      ds.seeks = String(Number(ds.seeks || 0) + 1);
      // And once the new transcript has been painted (the frame after the next one starts).
      requestAnimationFrame(() => requestAnimationFrame(() => {
        ds.seekPaintMs = (performance.now() - at).toFixed(1);
      }));
      seeking = null;
    }
  }

  // --- playback -------------------------------------------------------------------------------
  function ensureAudio() {
    if (ctx) return ctx;
    ctx = new AudioContext({ latencyHint: "playback" });
    gains = { user: ctx.createGain(), assistant: ctx.createGain() };
    gains.user.connect(ctx.destination);
    gains.assistant.connect(ctx.destination);
    applyTrackGains();
    return ctx;
  }
  function applyTrackGains() {
    if (!gains) return;
    gains.user.gain.value = userCb.checked ? 1 : 0;
    gains.assistant.gain.value = asstCb.checked ? 1 : 0;
  }

  function currentPosition() {
    if (!playing || !ctx) return position;
    return Math.min(duration, origin + (ctx.currentTime - startCtx) * speed);
  }

  function stopSources() {
    for (const list of scheduled.values()) {
      for (const s of list) {
        try {
          s.stop();
        } catch (_) {
          /* not started yet or already ended */
        }
        s.disconnect();
      }
    }
    scheduled.clear();
  }

  function scheduleAhead() {
    if (!playing || !ctx || !gains) return;
    const c = ctx;
    const g = gains;
    const ks = windowsFor(position, windowS, duration, PREFETCH_WINDOWS);
    for (const k of ks) fetchWindow(k);
    // Schedule the window under the playhead and the next one, once loaded.
    for (const k of ks.slice(0, 2)) {
      if (scheduled.has(k)) continue;
      const w = windows.get(k);
      if (!w) continue;
      const slot = scheduleWindow(k * windowS, w.user.length / rate, origin, startCtx, speed, c.currentTime + 0.01);
      if (!slot) continue;
      const sources = [];
      for (const [name, data] of /** @type {[ "user" | "assistant", Float32Array][]} */ ([["user", w.user], ["assistant", w.assistant]])) {
        const buf = c.createBuffer(1, Math.max(1, data.length), rate);
        buf.copyToChannel(/** @type {Float32Array<ArrayBuffer>} */ (data), 0);
        const src = c.createBufferSource();
        src.buffer = buf;
        src.playbackRate.value = speed;
        src.connect(g[name]);
        src.start(slot.when, slot.offset);
        sources.push(src);
      }
      scheduled.set(k, sources);
    }
    // Windows behind the playhead are done.
    for (const k of [...scheduled.keys()]) {
      if ((k + 1) * windowS < position - 0.5) scheduled.delete(k);
    }
  }

  async function play() {
    if (playing || !overview) return;
    if (position >= duration - 0.05) position = 0;
    const c = ensureAudio();
    try {
      if (c.state === "suspended") await c.resume();
    } catch (err) {
      report("warning", `audio output could not start: ${err}`);
    }
    playing = true;
    origin = position;
    startCtx = c.currentTime + 0.05;
    playBtn.textContent = "❚❚ Pause";
    ds.playing = "1";
    scheduleAhead();
    if (!ticker) ticker = setInterval(tick, TICK_MS);
  }

  function pause() {
    if (!playing) return;
    position = currentPosition();
    playing = false;
    stopSources();
    playBtn.textContent = "▶ Play";
    ds.playing = "0";
    if (ticker) clearInterval(ticker);
    ticker = null;
    savePosition();
    askState(position);
    renderTime();
    drawPlayhead();
  }

  function savePosition() {
    model.set("position_s", position);
    model.set("speed", speed);
    model.save_changes();
  }

  function tick() {
    if (!playing) return;
    position = currentPosition();
    if (position >= duration) {
      pause();
      return;
    }
    scheduleAhead();
    renderTime();
    drawPlayhead();
    syncEvents();
    const now = performance.now();
    // One state request at a time (a newer one supersedes it in the kernel), unless lost.
    const idle = lastStateAppliedReq >= lastStateReq || now - lastStateAskedAt > 1000;
    if (idle && now - lastStateAskedAt >= STATE_EVERY_MS / speed && Math.abs(position - lastStateAsked) > 0.05) {
      askState(position);
    }
  }

  /** @param {number} t */
  function seek(t) {
    const at = performance.now();
    position = Math.min(duration, Math.max(0, t));
    // Audio first: the kernel answers in order, and the window travels while it computes the
    // state. Paused, only the window under the playhead; playing, the next one too.
    for (const k of windowsFor(position, windowS, duration, playing ? 1 : 0)) fetchWindow(k);
    const req = askState(position);
    seeking = { req, t: position, at, state: false, audio: false };
    if (playing) {
      stopSources();
      origin = position;
      startCtx = (ctx ? ctx.currentTime : 0) + 0.05;
      scheduleAhead();
    } else {
      savePosition();
    }
    checkSeekDone();
    renderTime();
    drawPlayhead();
    syncEvents();
  }

  /** @param {number} s */
  function setSpeed(s) {
    const wasPlaying = playing;
    if (wasPlaying) pause();
    speed = s;
    for (const b of speedBtns) b.classList.toggle("rtnb-active", Number(b.dataset.speed) === s);
    ds.speed = String(s);
    savePosition();
    if (wasPlaying) play();
  }

  // --- controls -------------------------------------------------------------------------------
  playBtn.addEventListener("click", () => (playing ? pause() : play()));
  speedBtns.forEach((b) => b.addEventListener("click", () => setSpeed(Number(b.dataset.speed))));
  userCb.addEventListener("change", applyTrackGains);
  asstCb.addEventListener("change", applyTrackGains);
  canvas.addEventListener("click", (e) => {
    if (!overview) return;
    const r = canvas.getBoundingClientRect();
    seek(timeAtX(e.clientX - r.left, r.width, duration));
  });
  filterInput.addEventListener("input", refilter);
  filterInput.addEventListener("keydown", (e) => e.stopPropagation());
  root.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLElement && /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
    if (e.code === "Space") (playing ? pause : play)();
    else if (e.code === "ArrowLeft") seek(position - 5);
    else if (e.code === "ArrowRight") seek(position + 5);
    else return;
    e.preventDefault();
    e.stopPropagation(); // not a notebook shortcut
  });

  // --- kernel -> browser ----------------------------------------------------------------------
  /** @param {any} msg @param {DataView[]} buffers */
  function onMessage(msg, buffers) {
    if (msg.view !== view && msg.view != null) return;
    switch (msg.type) {
      case "overview": {
        duration = msg.duration_s;
        overview = {
          bins: msg.bins,
          peaks: buffers.map((b) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))),
          vad: msg.vad,
          truncations: msg.truncations,
          items: msg.items,
        };
        const m = msg.meta || {};
        metaEl.textContent = ` · ${[m.model, m.started_at, `${(m.events || 0).toLocaleString()} events`].filter(Boolean).join(" · ")}`;
        position = Math.min(position, duration);
        drawWaveform();
        renderTime();
        ds.overviewMs = (performance.now() - t0).toFixed(1);
        ds.overviewAt = performance.now().toFixed(1);
        ds.status = "ready";
        notice(null);
        askState(position, true);
        for (const k of windowsFor(position, windowS, duration, 1)) fetchWindow(k);
        break;
      }
      case "state":
        if (msg.req < lastStateAppliedReq) break; // an older answer overtaken by a newer one
        lastStateAppliedReq = msg.req;
        applyState(msg);
        if (seeking && msg.req >= seeking.req && !seeking.state) {
          seeking.state = true;
          ds.seekStateMs = (performance.now() - seeking.at).toFixed(1);
        }
        checkSeekDone();
        break;
      case "audio": {
        const k = pendingAudio.get(msg.req);
        pendingAudio.delete(msg.req);
        if (k === undefined || buffers.length < 2) break;
        audioMsgs++;
        audioBytes += buffers[0].byteLength + buffers[1].byteLength;
        ds.audioBytes = String(audioBytes);
        ds.audioMsgs = String(audioMsgs);
        windows.set(k, { user: pcm16ToFloat32(buffers[0]), assistant: pcm16ToFloat32(buffers[1]) });
        if (seeking && !seeking.audio && k === windowIndex(seeking.t, windowS)) {
          ds.seekAudioMs = (performance.now() - seeking.at).toFixed(1);
        }
        evictWindows();
        checkSeekDone();
        scheduleAhead();
        break;
      }
      case "event": {
        const seq = pendingDetail.get(msg.req);
        pendingDetail.delete(msg.req);
        const pre = eventList.querySelector(`pre.rtnb-json[data-seq="${seq}"]`);
        if (pre) pre.textContent = pretty(msg.data);
        break;
      }
      case "error":
        if (msg.req == null) {
          ds.status = "error";
          notice(msg.text, "error");
        } else {
          if (msg.req === lastStateReq) lastStateAppliedReq = msg.req;
          pendingAudio.delete(msg.req);
          notice(msg.text, "warning");
        }
        break;
      default:
        report("warning", `unknown message type from the kernel: ${msg.type}`);
    }
  }
  /** @param {any} msg @param {DataView[]} buffers */
  const onCustom = (msg, buffers) => {
    try {
      onMessage(msg, buffers || []);
    } catch (err) {
      report("error", `handling ${msg && msg.type}: ${err}`);
    }
  };
  function renderStatus() {
    const status = model.get("status");
    if (status === "error") {
      ds.status = "error";
      notice(model.get("status_text"), "error");
    } else if (status === "loading") {
      notice(model.get("status_text") || "Reading the recording…", "info");
    }
  }
  const onResize = () => {
    if (overview && Math.abs(canvas.width / (window.devicePixelRatio || 1) - canvasWidth()) > 2) drawWaveform();
  };
  const resizer = typeof ResizeObserver !== "undefined" ? new ResizeObserver(onResize) : null;
  resizer?.observe(timeline);

  model.on("msg:custom", onCustom);
  model.on("change:status", renderStatus);
  renderStatus();
  for (const b of speedBtns) b.classList.toggle("rtnb-active", Number(b.dataset.speed) === speed);
  ds.speed = String(speed);
  send({ type: "ready", bins: Math.round(canvasWidth() * (window.devicePixelRatio || 1)) });

  return () => {
    model.off("msg:custom", onCustom);
    model.off("change:status", renderStatus);
    resizer?.disconnect();
    if (ticker) clearInterval(ticker);
    stopSources();
    if (ctx) ctx.close().catch(() => {});
  };
}

export default { render };
