// @ts-check
// The replay view (ReplayWidget's `_main`; loader.js imports it): wiring only.
//
// The kernel half (replay.py) documents the message catalogue. The browser holds the overview
// (peaks of both tracks, VAD segments, truncations, labelled markers) and asks for what the playhead needs: the
// conversation state at t, the event-list window around t, and audio windows of `window_s` seconds
// (the one under the playhead and the next, prefetched while playing), never the whole session.
// The arithmetic is in timeline.js, the audio in player.js, the picture in waveform.js, the
// transcript in items.js, the event list in eventview.js.

import { bytesToPcm16, pcm16ToFloat } from "./audio.js";
import { EventWindowView } from "./eventview.js";
import { clock } from "./format.js";
import { SPEAKING, Transcript } from "./items.js";
import { ReplayPlayer } from "./player.js";
import { MARKER_ROWS, eventsCover, layoutMarkers, timeAtX, windowIndex, windowsFor } from "./timeline.js";
import { el, h, makeTabs, noticeLine } from "./ui.js";
import { drawPlayhead, drawWaveform } from "./waveform.js";

/** @typedef {import("./types.js").RenderContext} RenderContext */
/** @typedef {import("./types.js").Item} Item */
/** @typedef {import("./waveform.js").Overview} Overview */
/** @typedef {import("./timeline.js").Marker} Marker */

/** While playing, the transcript follows the playhead at this interval (ms). */
const STATE_EVERY_MS = 200;
/** The scheduler's tick (ms): schedules windows, prefetches, moves the playhead. */
const TICK_MS = 50;
/** Playback speeds (the kernel's SPEEDS); the audio is time-stretched, so pitch is kept. */
const SPEEDS = [0.5, 1, 1.5, 2];
/** Height of one row of marker labels under the timeline (px). */
const MARKER_ROW_PX = 15;
/** What each kind of marker is, for its tooltip. */
const MARKER_TITLES = /** @type {Record<string, string>} */ ({
  user: "the user starts speaking",
  assistant: "the assistant starts speaking",
  tool: "tool call",
  response: "response created",
  truncation: "playback cut: the listener heard this much of the answer",
});
const TABS = ["Transcript", "Events"];

/** PCM16 LE bytes (a comm buffer) as float samples. @param {DataView} b */
const toFloat = (b) => pcm16ToFloat(bytesToPcm16(b));

/** @param {RenderContext} ctx */
async function render({ model, el: host }) {
  const view = Math.random().toString(36).slice(2, 14);
  const t0 = performance.now();
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
  const userCb = el("input", { type: "checkbox", class: "rtnb-track-user" });
  const asstCb = el("input", { type: "checkbox", class: "rtnb-track-assistant" });
  userCb.checked = true;
  asstCb.checked = true;
  const controls = h("div", { class: "rtnb-controls" }, playBtn, ...speedBtns, timeEl,
    h("label", { class: "rtnb-trackopt" }, userCb, "user"),
    h("label", { class: "rtnb-trackopt" }, asstCb, "assistant"));

  const canvas = el("canvas", { class: "rtnb-canvas", title: "Click to seek" });
  const markerStrip = h("div", { class: "rtnb-markers", style: `height: ${MARKER_ROWS * MARKER_ROW_PX + 2}px` });
  const timeline = h("div", { class: "rtnb-timeline" }, canvas, markerStrip);
  const legend = h("div", { class: "rtnb-timeline-legend" },
    h("span", {}, h("span", { class: "rtnb-swatch", style: "background: var(--rtnb-accent)" }), "user"),
    h("span", {}, h("span", { class: "rtnb-swatch", style: "background: var(--rtnb-ok)" }), "assistant (as heard)"),
    h("span", {}, h("span", { class: "rtnb-swatch", style: "background: var(--rtnb-user)" }), "speech (VAD)"),
    h("span", {}, h("span", { class: "rtnb-swatch", style: "background: var(--rtnb-err)" }), "truncation"));
  const notices = noticeLine();
  const notice = notices.show;

  const { tabs, panes, show } = makeTabs(TABS, (name) => {
    if (name === "Events") events.build(position);
  });
  const transcriptEl = h("div", { class: "rtnb-transcript" });
  const emptyTranscript = h("div", { class: "rtnb-empty" }, "Nothing said yet at this point.");
  // The user is speaking at the playhead and the item for it is not there yet.
  const speakingEl = h("div", { class: "rtnb-item rtnb-user rtnb-pending-item", hidden: true },
    h("span", { class: "rtnb-role" }, "user"), h("em", { class: "rtnb-speaking" }, SPEAKING));
  panes.Transcript.append(emptyTranscript, transcriptEl, speakingEl);
  const filterInput = el("input", { class: "rtnb-filter", type: "search", placeholder: "Filter by type (e.g. response.)" });
  const eventCount = h("span", { class: "rtnb-count" });
  const eventList = h("div", { class: "rtnb-events" });
  panes.Events.append(h("div", { class: "rtnb-toolbar" }, filterInput, eventCount), eventList);

  const root = h("div", { class: "rtnb-root rtnb-replay", tabindex: 0, "data-status": "loading" },
    header, controls, timeline, legend, notices.el, tabs, ...TABS.map((n) => panes[n]));
  host.append(root);

  // --- state ----------------------------------------------------------------------------------
  const ds = root.dataset; // measurements for tests and the benchmark live here
  let duration = 0;
  const windowS = model.get("window_s") || 4;
  /** @type {Overview | null} */
  let overview = null;
  /** @type {HTMLCanvasElement | null} */
  let picture = null; // the static picture; the playhead is drawn over it
  let position = Math.max(0, model.get("position_s") || 0);
  let lastStateReq = 0;
  let lastStateAppliedReq = 0;
  let lastStateAsked = -1;
  let lastStateAskedAt = 0;
  /** @type {{req: number, t: number, at: number, state: boolean, audio: boolean} | null} */
  let seeking = null;
  let audioBytes = 0;
  let audioMsgs = 0;
  /** @type {Map<number, number>} req -> seq, for event details */
  const pendingDetail = new Map();
  /** @type {ReturnType<typeof setInterval> | null} */
  let ticker = null;

  const transcript = new Transcript(transcriptEl, emptyTranscript, { scroll: "follow" });
  const events = new EventWindowView({ list: eventList, count: eventCount, pane: panes.Events, filter: filterInput },
    (seq) => {
      const req = ++reqSeq;
      pendingDetail.set(req, seq);
      send({ type: "get_event", req, seq });
    });
  const player = new ReplayPlayer({
    rate: model.get("rate") || 24000,
    windowS,
    request: (k) => {
      const req = ++reqSeq;
      send({ type: "get_audio", req, start_s: k * windowS, duration_s: windowS });
      return req;
    },
  });
  player.setSpeed(SPEEDS.includes(model.get("speed")) ? model.get("speed") : 1);
  show("Transcript");

  // --- timeline -------------------------------------------------------------------------------
  function canvasWidth() {
    return Math.max(200, Math.round(timeline.clientWidth || host.clientWidth || 800));
  }
  /** @param {string} name */
  function cssVar(name) {
    return getComputedStyle(root).getPropertyValue(name).trim() || "#888";
  }
  function redraw() {
    if (!overview) return;
    picture = drawWaveform(overview, duration, canvasWidth(), window.devicePixelRatio || 1, cssVar);
    canvas.width = picture.width;
    canvas.height = picture.height;
    drawMarkers();
    playhead();
  }
  /** The labelled markers under the waveform: click one to go there. */
  function drawMarkers() {
    const markers = /** @type {Marker[]} */ (overview ? overview.markers : []);
    const width = canvasWidth();
    const places = layoutMarkers(markers, width, duration);
    markerStrip.replaceChildren(...markers.map(([t, kind, label, itemId], i) => {
      const { x, row, flip } = places[i];
      return h("div", {
        class: `rtnb-marker rtnb-mk-${kind}${flip ? " rtnb-flip" : ""}`,
        style: `left: ${((x / width) * 100).toFixed(3)}%; top: ${Math.max(0, row) * MARKER_ROW_PX}px`,
        title: `${label} at ${clock(t)}: ${MARKER_TITLES[kind] || kind}${itemId ? ` (${itemId})` : ""}`,
        "data-kind": kind,
        "data-t": t,
        onclick: () => seek(t),
      }, row >= 0 ? h("span", { class: "rtnb-marker-label" }, label) : null);
    }));
  }
  function playhead() {
    drawPlayhead(canvas, picture, position, duration, cssVar("--rtnb-fg"));
  }
  function renderTime() {
    timeEl.textContent = `${clock(position)} / ${clock(duration)}`;
    ds.position = String(position);
  }

  /** @param {any} msg a `state` message */
  function applyState(msg) {
    transcript.apply(/** @type {Item[]} */ (msg.items), msg.order, !!msg.full);
    const u = msg.usage || {};
    speakingEl.hidden = !msg.speaking;
    statsEl.textContent = `${msg.order.length} items · ${msg.turns} turns${u.total_tokens ? ` · ${u.total_tokens.toLocaleString()} tokens` : ""} at ${clock(msg.t)}`;
    ds.stateT = String(msg.t);
    ds.stateReq = String(msg.req);
    if (msg.events) events.set(msg.events, position);
  }

  // --- requests -------------------------------------------------------------------------------
  /** @param {number} t @param {boolean} full */
  function askState(t, full = false) {
    const req = ++reqSeq;
    send({ type: "get_state", req, t, events: !eventsCover(events.from, events.to, t, duration), full });
    lastStateReq = req;
    lastStateAsked = t;
    lastStateAskedAt = performance.now();
    return req;
  }

  function checkSeekDone() {
    if (!seeking) return;
    const k = windowIndex(seeking.t, windowS);
    seeking.audio = player.windows.has(k) || k * windowS >= duration;
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
  async function play() {
    if (player.playing || !overview) return;
    if (position >= duration - 0.05) position = 0;
    const c = player.context();
    try {
      if (c.state === "suspended") await c.resume();
    } catch (err) {
      report("warning", `audio output could not start: ${err}`);
    }
    player.start(position);
    playBtn.textContent = "❚❚ Pause";
    ds.playing = "1";
    if (!ticker) ticker = setInterval(tick, TICK_MS);
  }

  function pause() {
    if (!player.playing) return;
    position = player.position(position);
    player.pause();
    playBtn.textContent = "▶ Play";
    ds.playing = "0";
    if (ticker) clearInterval(ticker);
    ticker = null;
    savePosition();
    askState(position);
    renderTime();
    playhead();
  }

  function savePosition() {
    model.set("position_s", position);
    model.set("speed", player.speed);
    model.save_changes();
  }

  function tick() {
    if (!player.playing) return;
    position = player.position(position);
    if (position >= duration) {
      pause();
      return;
    }
    player.schedule(position);
    renderTime();
    playhead();
    events.sync(position);
    const now = performance.now();
    // One state request at a time (a newer one supersedes it in the kernel), unless lost.
    const idle = lastStateAppliedReq >= lastStateReq || now - lastStateAskedAt > 1000;
    if (idle && now - lastStateAskedAt >= STATE_EVERY_MS / player.speed && Math.abs(position - lastStateAsked) > 0.05) {
      askState(position);
    }
  }

  /** @param {number} t */
  function seek(t) {
    const at = performance.now();
    position = Math.min(duration, Math.max(0, t));
    // Audio first: the kernel answers in order, and the window travels while it computes the
    // state. Paused, only the window under the playhead; playing, the next one too.
    for (const k of windowsFor(position, windowS, duration, player.playing ? 1 : 0)) player.fetch(k);
    const req = askState(position);
    seeking = { req, t: position, at, state: false, audio: false };
    if (player.playing) player.restart(position);
    else savePosition();
    checkSeekDone();
    renderTime();
    playhead();
    events.sync(position);
  }

  /** @param {number} s */
  function setSpeed(s) {
    const wasPlaying = player.playing;
    if (wasPlaying) pause();
    player.setSpeed(s);
    for (const b of speedBtns) b.classList.toggle("rtnb-active", Number(b.dataset.speed) === s);
    ds.speed = String(s);
    savePosition();
    if (wasPlaying) play();
  }

  // --- controls -------------------------------------------------------------------------------
  const applyTracks = () => player.setTracks({ user: userCb.checked, assistant: asstCb.checked });
  playBtn.addEventListener("click", () => (player.playing ? pause() : play()));
  speedBtns.forEach((b) => b.addEventListener("click", () => setSpeed(Number(b.dataset.speed))));
  userCb.addEventListener("change", applyTracks);
  asstCb.addEventListener("change", applyTracks);
  canvas.addEventListener("click", (e) => {
    if (!overview) return;
    const r = canvas.getBoundingClientRect();
    seek(timeAtX(e.clientX - r.left, r.width, duration));
  });
  filterInput.addEventListener("input", () => events.refilter());
  filterInput.addEventListener("keydown", (e) => e.stopPropagation());
  root.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLElement && /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
    if (e.code === "Space") (player.playing ? pause : play)();
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
        player.duration = duration;
        events.duration = duration;
        overview = {
          bins: msg.bins,
          peaks: buffers.map((b) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))),
          vad: msg.vad,
          truncations: msg.truncations,
          items: msg.items,
          markers: msg.markers || [],
        };
        const m = msg.meta || {};
        metaEl.textContent = ` · ${[m.model, m.started_at, `${(m.events || 0).toLocaleString()} events`].filter(Boolean).join(" · ")}`;
        position = Math.min(position, duration);
        redraw();
        renderTime();
        ds.overviewMs = (performance.now() - t0).toFixed(1);
        ds.overviewAt = performance.now().toFixed(1);
        ds.status = "ready";
        notice(null);
        askState(position, true);
        for (const k of windowsFor(position, windowS, duration, 1)) player.fetch(k);
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
        const data = buffers.length < 2 ? undefined : { user: toFloat(buffers[0]), assistant: toFloat(buffers[1]) };
        const k = player.received(msg.req, data);
        if (k === undefined) break;
        audioMsgs++;
        audioBytes += buffers[0].byteLength + buffers[1].byteLength;
        ds.audioBytes = String(audioBytes);
        ds.audioMsgs = String(audioMsgs);
        if (seeking && !seeking.audio && k === windowIndex(seeking.t, windowS)) {
          ds.seekAudioMs = (performance.now() - seeking.at).toFixed(1);
        }
        player.evict(position);
        checkSeekDone();
        player.schedule(position);
        break;
      }
      case "event": {
        const seq = pendingDetail.get(msg.req);
        pendingDetail.delete(msg.req);
        if (seq !== undefined) events.showDetail(seq, msg.data);
        break;
      }
      case "error":
        if (msg.req == null) {
          ds.status = "error";
          notice(msg.text, "error");
        } else {
          if (msg.req === lastStateReq) lastStateAppliedReq = msg.req;
          player.received(msg.req);
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
    if (overview && Math.abs(canvas.width / (window.devicePixelRatio || 1) - canvasWidth()) > 2) redraw();
  };
  const resizer = typeof ResizeObserver !== "undefined" ? new ResizeObserver(onResize) : null;
  resizer?.observe(timeline);

  model.on("msg:custom", onCustom);
  model.on("change:status", renderStatus);
  renderStatus();
  for (const b of speedBtns) b.classList.toggle("rtnb-active", Number(b.dataset.speed) === player.speed);
  ds.speed = String(player.speed);
  send({ type: "ready", bins: Math.round(canvasWidth() * (window.devicePixelRatio || 1)) });

  return () => {
    model.off("msg:custom", onCustom);
    model.off("change:status", renderStatus);
    resizer?.disconnect();
    if (ticker) clearInterval(ticker);
    player.close();
  };
}

export default { render };
