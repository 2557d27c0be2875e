// @ts-check
// The live widget's view (RealtimeWidget's `_main`; loader.js imports it): wiring only.
//
// The kernel half (widget.py) documents the comm message catalogue. This file builds the DOM and
// connects the modules to the model's messages: the audio I/O (engine.js), the mic button's state
// machine (mic.js), one played report per cut (cuts.js), the transcript (items.js), the event log
// (eventlog.js, eventview.js), the settings (settings.js). With `transport == "webrtc"` the
// page's own peer connection carries the audio (webrtc.js): the mic button starts the call.

import { meterPosition } from "./audio.js";
import { PlayedReports } from "./cuts.js";
import { DevicePicker } from "./deviceview.js";
import { canChooseOutput } from "./devices.js";
import { AudioEngine, captureProblem } from "./engine.js";
import { EventLogView } from "./eventview.js";
import { fmtSeconds } from "./format.js";
import { Transcript, toolCards } from "./items.js";
import { MicControl, micError } from "./mic.js";
import { MODES, SettingsPane, changedSettings } from "./settings.js";
import { el, h, iconLabel, makeTabs, noticeLine } from "./ui.js";
import { RELAY_HINT, viewChange, webrtcProblem } from "./rtcstate.js";
import { WebRTCLink } from "./webrtc.js";

/** @typedef {import("./types.js").RenderContext} RenderContext */
/** @typedef {import("./cuts.js").PlayedReport} PlayedReport */

const TABS = ["Transcript", "Events", "Tools", "Turns", "Settings"];
/** How long a passing notice shows before the lasting one (a mic or audio problem) returns. */
const NOTICE_MS = 6000;
/** WebRTC push-to-talk: wait after release before "end", so the last speech (20 ms frames, a jitter buffer of a few tens of ms) is at the server before the commit. */
const PTT_TAIL_MS = 150;

const epochMs = () => performance.timeOrigin + performance.now();

/** @param {RenderContext} ctx */
async function render({ model, el: host }) {
  const view = Math.random().toString(36).slice(2, 14);
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
  const recordingEl = h("span", { class: "rtnb-recording", hidden: true });
  const statsEl = h("span", { class: "rtnb-stats" });
  const header = h("div", { class: "rtnb-header" }, dot, statusText, backend, recordingEl, statsEl);

  const micBtn = el("button", { class: "rtnb-btn rtnb-mic", type: "button" });
  const muteBtn = h("button", { class: "rtnb-btn rtnb-mute", type: "button", title: "Mute the mic" });
  const stopBtn = h("button", { class: "rtnb-btn rtnb-stop", type: "button", title: "Stop the assistant" },
    iconLabel("stop", "Stop"));
  const modeSel = el("select", { class: "rtnb-mode", title: "Turn detection" },
    ...MODES.map(([v, label]) => h("option", { value: v }, label)));
  const meterFill = h("div", { class: "rtnb-meter-fill" });
  const meter = h("div", { class: "rtnb-meter", title: "Input level" }, meterFill);
  const playing = h("span", { class: "rtnb-playing" });
  const controls = h("div", { class: "rtnb-controls" }, micBtn, muteBtn, stopBtn, modeSel, meter, playing);
  const notices = noticeLine();
  const devices = new DevicePicker({ input: onInputDevice, output: onOutputDevice }, {
    outputSupported: canChooseOutput(typeof AudioContext === "undefined" ? null : AudioContext.prototype),
    micProblem: captureProblem(),
  });

  // The event log draws its rows only while its tab is open; opening it brings them up to date.
  const { tabs, panes, show } = makeTabs(TABS, (name) => {
    if (name === "Events") events.flush();
  });
  const transcriptEl = h("div", { class: "rtnb-transcript" });
  const emptyTranscript = h("div", { class: "rtnb-empty" }, "Nothing said yet. Press the mic or type below.");
  panes.Transcript.append(emptyTranscript, transcriptEl);

  const filterInput = el("input", { class: "rtnb-filter", type: "search", placeholder: "Filter by type (e.g. response.)" });
  const sourceSel = el("select", { class: "rtnb-source" },
    h("option", { value: "" }, "all sources"),
    h("option", { value: "client" }, "→ client"),
    h("option", { value: "server" }, "← server"),
    h("option", { value: "local" }, "• local"));
  const eventCount = h("span", { class: "rtnb-count" });
  const eventList = h("div", { class: "rtnb-events" });
  panes.Events.append(h("div", { class: "rtnb-toolbar" }, filterInput, sourceSel, eventCount), eventList);

  const toolList = h("div", { class: "rtnb-tools" });
  panes.Tools.append(toolList);
  const turnsTable = h("table", { class: "rtnb-turns" });
  panes.Turns.append(turnsTable);
  const settings = new SettingsPane(panes.Settings, { apply: applySettings, micOption: onMicOption });

  const textInput = el("input", { class: "rtnb-textinput", type: "text", placeholder: "Type a message and press Enter" });
  const sendBtn = h("button", { class: "rtnb-btn rtnb-send", type: "button" }, iconLabel("send", "Send"));
  const textRow = h("div", { class: "rtnb-textrow" }, textInput, sendBtn);

  const root = h("div", { class: "rtnb-root", tabindex: 0 }, header, controls, devices.el, notices.el, tabs,
    ...TABS.map((n) => panes[n]), textRow);
  host.append(root);
  show("Transcript");

  // --- state ----------------------------------------------------------------------------------
  const capture = captureProblem();
  const engine = new AudioEngine(model, { onWorklet, view });
  const mic = new MicControl(capture);
  const reports = new PlayedReports();
  const transcript = new Transcript(transcriptEl, emptyTranscript, {
    scroll: "stick",
    played: (id) => reports.played.get(id),
    onPaint: () => toolList.replaceChildren(...toolCards(transcript.calls(), transcript.items.values())),
  });
  const events = new EventLogView(eventList, eventCount, () => ({ type: filterInput.value, source: sourceSel.value }),
    undefined, () => !panes.Events.hidden);
  let levelShown = 0;
  /** The notice that stays (a mic or audio problem) once a passing one has been read. @type {string | null} */
  let stickyNotice = null;
  const notice = notices.show;
  const webrtc = model.get("transport") === "webrtc";
  root.dataset.transport = webrtc ? "webrtc" : "websocket";
  /** Why WebRTC cannot work here (checked once; a failed call sets it too). @type {string | null} */
  let rtcProblem = webrtc ? webrtcProblem(/** @type {any} */ (window)) : null;
  /** @type {WebRTCLink | null} */
  let link = null;
  if (rtcProblem) {
    stickyNotice = `WebRTC unavailable: ${rtcProblem}. ${RELAY_HINT}`;
    notice(stickyNotice, "error");
    root.dataset.rtcState = "unavailable";
  } else if (capture) {
    stickyNotice = `Microphone unavailable: ${capture}. Text input still works.`;
    notice(stickyNotice, "warning");
  } else if (webrtc) {
    notice("WebRTC: press the mic to start the call (the audio goes straight between this page and the server).", "info");
  }

  // --- model state -> DOM ---------------------------------------------------------------------
  function renderStatus() {
    const status = model.get("status");
    dot.className = `rtnb-dot rtnb-${status}`;
    statusText.textContent = model.get("status_text") || status;
    const label = String(model.get("backend") || "");
    // The offline backend is information worth seeing (its replies are stand-ins), not an error.
    const offline = /\blocal\b/i.test(label);
    if (offline) backend.replaceChildren(iconLabel("info", label));
    else backend.textContent = label ? `· ${label}` : "";
    backend.classList.toggle("rtnb-offline", offline);
    backend.title = offline ? "Offline: the local backend's voice, turn detection and replies are stand-ins for a real model" : label;
    const file = String(model.get("recording") || "");
    recordingEl.hidden = !file;
    const name = file.split(/[\\/]/).pop() || file;
    const live = status !== "closed";
    recordingEl.textContent = live ? `● recording to ${name}` : `● recorded to ${name}`;
    recordingEl.classList.toggle("rtnb-rec-live", live);
    recordingEl.title = file;
  }
  function renderMode() {
    const mode = model.get("mode");
    modeSel.value = mode;
    settings.vad.value = mode;
    renderMic();
  }
  function renderMic() {
    const ptt = isPtt();
    const muted = !!model.get("muted");
    const v = mic.view({ ptt, muted });
    root.classList.toggle("rtnb-ptt", ptt);
    micBtn.classList.toggle("rtnb-live", v.live);
    micBtn.replaceChildren(iconLabel(v.icon, v.label));
    micBtn.title = v.title;
    micBtn.disabled = v.disabled;
    muteBtn.replaceChildren(iconLabel(v.muteIcon, v.muteLabel));
    meter.classList.toggle("rtnb-dim", muted);
    muteBtn.classList.toggle("rtnb-on", muted);
  }
  function renderSettings() {
    settings.show(model.get("settings") || {}, model.get("mic_options") || {});
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

  // --- audio ----------------------------------------------------------------------------------
  /** @param {any} m a message from a worklet */
  function onWorklet(m) {
    switch (m.type) {
      case "chunk": {
        // Sent before anything touches the DOM: the chunk is what the kernel waits for.
        const pcm = model.get("muted") ? new ArrayBuffer(m.pcm.byteLength) : m.pcm;
        const msg = { type: "mic", seq: m.seq, t: epochMs(), tw: m.at };
        send(m.resend ? { ...msg, resend: true } : msg, [pcm]);
        setLevel(m.rms);
        break;
      }
      case "level":
        setLevel(m.rms);
        break;
      case "started":
        reports.started(m.itemId);
        send({ type: "playback_started", item_id: m.itemId, t: epochMs() + engine.outputLatencyMs() });
        break;
      case "finished":
        sendPlayed(reports.finished(m.itemId, m.playedMs));
        playing.textContent = "";
        break;
      case "progress":
        playing.textContent = `▶ ${fmtSeconds(m.playedMs)}`;
        break;
      case "lane":
        // The kernel notes it; a lane that is down only means the mic uses the comm.
        send({ type: "lane", state: m.state, reason: m.reason || "" });
        break;
      case "error":
        report("error", m.message);
        break;
      default:
        report("warning", `unknown worklet message ${m.type}`);
    }
  }

  /** @param {number} rms */
  function setLevel(rms) {
    const pos = meterPosition(rms);
    // Fast attack, slow release, like a VU meter.
    levelShown = pos > levelShown ? pos : levelShown * 0.7 + pos * 0.3;
    meterFill.style.width = `${(levelShown * 100).toFixed(1)}%`;
  }

  /** @param {PlayedReport | null} r */
  function sendPlayed(r) {
    if (!r) return;
    send({ type: "played", ...r });
    transcript.refresh(r.item_id);
  }

  /** Flush playback now and report what was heard. @param {"interrupted" | "stopped"} reason */
  async function flushPlayback(reason) {
    reports.cutting();
    const flushed = await engine.flush();
    // On a call the data channel's events say what plays (onPeerEvent); nothing relayed did.
    if (!webrtc) playing.textContent = "";
    for (const r of reports.cutDone(flushed, reason)) sendPlayed(r);
  }

  async function gesture() {
    try {
      await engine.resume();
      if (stickyNotice === null) notice(null);
    } catch (err) {
      report("error", `audio output could not start: ${err}`);
    }
  }

  // --- mic ------------------------------------------------------------------------------------
  /** WebRTC: open the call once (the mic comes with it); later presses only enable the track. */
  async function openCall() {
    if (link) return;
    if (rtcProblem) throw Object.assign(new Error(rtcProblem), { name: "WebRTCUnavailable" });
    const call = new WebRTCLink(model, engine, {
      send,
      report,
      onEvent: onPeerEvent,
      onProblem: onCallProblem,
      onLevel: setLevel,
      onOnsets: (track, onsets) => {
        root.dataset[track === "input" ? "rtcOnsetsInput" : "rtcOnsetsOutput"] = JSON.stringify(onsets);
      },
    });
    link = call;
    root.dataset.rtcState = "connecting";
    try {
      await call.start(model.get("mic_options") || {}, devices.inputId);
    } catch (err) {
      const e = /** @type {any} */ (err);
      if (e.name !== "NotAllowedError" && e.name !== "NotFoundError" && e.name !== "SecurityError") {
        onCallProblem(`the call could not start: ${e && e.message ? e.message : e}`);
      }
      call.close();
      link = null;
      throw err;
    }
    root.dataset.rtcState = "connected";
  }

  /** @param {string} why */
  function onCallProblem(why) {
    rtcProblem = why;
    root.dataset.rtcState = "failed";
    stickyNotice = `WebRTC: ${why}. ${RELAY_HINT}`;
    notice(stickyNotice, "error");
    report("error", `WebRTC: ${why}`);
  }

  /** A server event from the data channel: what is playing, an interruption. @param {any} ev */
  function onPeerEvent(ev) {
    const change = viewChange(ev);
    if (!change) return;
    if (change.playing) playing.textContent = "▶ speaking";
    else playing.textContent = change.interrupted ? "⏹ interrupted" : "";
    root.dataset.rtcPlaying = change.playing ? change.playing.responseId : "";
  }

  function rtcSending() {
    if (link) link.setSending(mic.power === "on" && !model.get("muted") && (!isPtt() || mic.talking));
  }

  async function micOn() {
    mic.opening();
    renderMic();
    try {
      if (webrtc) await openCall();
      else await engine.openMic(model.get("mic_options") || {}, devices.inputId);
    } catch (err) {
      const { state, why } = micError(err);
      stickyNotice = `Microphone unavailable: ${why}. Text input still works.`;
      notice(stickyNotice, "warning");
      mic.failed();
      send({ type: "mic_state", state, reason: why });
      renderMic();
      return false;
    }
    mic.opened();
    rtcSending();
    root.dataset.micDevice = devices.inputId;
    send({ type: "mic_state", state: "on", reason: "" });
    renderMic();
    devices.refresh().catch((err) => report("warning", `listing devices: ${err}`)); // labels now show
    return true;
  }

  /** The user chose another microphone: an open one moves to it at once. @param {string} id */
  async function onInputDevice(id) {
    if (webrtc) {
      if (link) notice("The call keeps its microphone; the new one applies to the next call.", "info");
      return;
    }
    try {
      if (await engine.switchMic(id, model.get("mic_options") || {})) {
        root.dataset.micDevice = id; // which device is open, for tests
        notice(`Microphone: ${devices.label("audioinput", id) || "system default"}.`, "info");
      }
    } catch (err) {
      const { why } = micError(err);
      notice(`That microphone could not be opened (${why}); the previous one is still in use.`, "warning");
      report("warning", `switching the microphone: ${err}`);
    }
  }

  /** The user chose another output device. @param {string} id */
  async function onOutputDevice(id) {
    try {
      await engine.setOutput(id);
      root.dataset.sinkId = id; // where the audio goes, for tests
    } catch (err) {
      notice(`The output could not be switched: ${err}.`, "warning");
      report("warning", `switching the output: ${err}`);
    }
  }

  async function micOff() {
    if (!webrtc) await engine.closeMic();
    mic.closed();
    rtcSending();
    send({ type: "mic_state", state: "off", reason: "user" });
    setLevel(0);
    renderMic();
  }

  async function toggleMic() {
    await gesture();
    const action = mic.click();
    if (action === "close") await micOff();
    else if (action === "open" && (await micOn())) engine.startCapture();
  }

  async function pttStart() {
    if (!mic.press()) return;
    await gesture();
    if (model.get("muted")) {
      notice("The mic is muted: unmute to talk.", "info");
      return;
    }
    if (mic.power !== "on" && !(await micOn())) return;
    if (!mic.held) return; // released while the mic was opening
    await flushPlayback("interrupted");
    if (!mic.talk()) return; // released while playback was flushing
    send({ type: "ptt", action: "start" });
    if (webrtc) rtcSending();
    else engine.startCapture();
    renderMic();
  }

  async function pttEnd() {
    if (!mic.release()) return;
    renderMic();
    if (webrtc) {
      rtcSending();
      // The last audio is on the network path (jitter buffer, decoder), not the comm: let it
      // reach the server before the kernel commits the turn.
      await new Promise((r) => setTimeout(r, PTT_TAIL_MS));
      send({ type: "ptt", action: "end" });
      return;
    }
    await engine.stopCapture(); // the last chunk is posted before "end"
    // Chunks may take the mic lane, not the comm: `seq` tells the kernel what to wait for.
    send({ type: "ptt", action: "end", seq: engine.micSeq });
  }

  // --- controls -------------------------------------------------------------------------------
  function isPtt() {
    return model.get("mode") === "push_to_talk";
  }
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
  filterInput.addEventListener("input", () => events.refilter());
  sourceSel.addEventListener("change", () => events.refilter());
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
  function applySettings() {
    const changed = changedSettings(settings.form(), model.get("settings") || {}, model.get("mode"));
    if (Object.keys(changed).length) send({ type: "update", ...changed });
    else notice("Nothing to apply: these are the settings in effect.", "info");
  }
  /** @param {Record<string, boolean>} opts */
  function onMicOption(opts) {
    model.set("mic_options", opts);
    model.save_changes();
    (link ? link.applyMicOptions(opts) : engine.applyMicOptions(opts)).catch((err) => report("warning", `mic options not applied live: ${err}`));
  }
  root.addEventListener("pointerdown", () => {
    if (engine.ctx && engine.suspended) gesture();
  });

  // --- kernel -> browser ----------------------------------------------------------------------
  /** @param {any} msg @param {DataView[]} buffers */
  async function onMessage(msg, buffers) {
    switch (msg.type) {
      case "snapshot":
        transcript.apply(msg.items, msg.order, true);
        events.clear();
        events.add(msg.events);
        renderStats(msg.stats);
        break;
      case "items":
        transcript.apply(msg.items, msg.order);
        break;
      case "events":
        events.add(msg.events);
        break;
      case "stats":
        renderStats(msg);
        break;
      case "audio":
        if (msg.view !== view || !buffers.length || !reports.accepts(msg.item_id)) break;
        await engine.push(msg.item_id, buffers[0]);
        if (engine.suspended) notice("Click anywhere in this widget to hear the assistant (the browser blocks autoplay).", "info");
        break;
      case "audio_done":
        if (msg.view === view && reports.accepts(msg.item_id)) await engine.end(msg.item_id);
        break;
      case "flush":
        if (msg.view === view) await flushPlayback("interrupted");
        break;
      case "notice":
        notice(msg.text, msg.level);
        if (msg.level !== "error") setTimeout(() => notice(stickyNotice, "warning"), NOTICE_MS);
        break;
      default:
        if (link && link.handle(msg)) break;
        report("warning", `unknown message type from the kernel: ${msg.type}`);
    }
  }
  /** @param {any} msg @param {DataView[]} buffers */
  const onCustom = (msg, buffers) => {
    onMessage(msg, buffers || []).catch((err) => report("error", `handling ${msg && msg.type}: ${err}`));
  };

  /** @type {[string, () => void][]} */
  const listeners = [
    ["change:status", renderStatus],
    ["change:status_text", renderStatus],
    ["change:backend", renderStatus],
    ["change:recording", renderStatus],
    ["change:mode", renderMode],
    ["change:muted", renderMic],
    ["change:muted", () => rtcSending()],
    ["change:muted", () => engine.setMuted(!!model.get("muted"))],
    ["change:settings", renderSettings],
    ["change:mic_options", renderSettings],
  ];
  model.on("msg:custom", onCustom);
  for (const [name, f] of listeners) model.on(name, f);
  renderStatus();
  renderMode();
  renderSettings();
  renderStats({ cost: 0, tokens: {}, turns: [] });

  // Playback needs no gesture when the page allows autoplay; otherwise the first click resumes it.
  // The remembered output applies once the devices are listed (an unplugged one means the default).
  const listed = devices.refresh().then(() => true, (err) => {
    report("warning", `listing the audio devices: ${err}`);
    return false;
  });
  Promise.all([engine.context(), listed]).then(([, ok]) => {
    const out = devices.outputId;
    if (ok && out && devices.can.outputSupported) {
      engine.setOutput(out).then(() => {
        root.dataset.sinkId = out;
      }, (err) => report("warning", `choosing the remembered output: ${err}`));
    }
  }, () => {}); // an AudioContext that failed is reported just below
  engine.context().catch((err) => {
    const why = err && err.message ? err.message : String(err);
    // Keep what the mic notice says (often the same cause): both matter to the user. Over
    // WebRTC the reason the call cannot work, and the way out, come first.
    stickyNotice = rtcProblem
      ? `WebRTC unavailable: ${rtcProblem}. ${RELAY_HINT}`
      : capture
        ? `Microphone unavailable: ${capture}. Audio output unavailable too: ${why}. Text input still works.`
        : `Audio output unavailable: ${why}. Text still works.`;
    notice(stickyNotice, rtcProblem ? "error" : "warning");
    report("error", `AudioContext/worklet failed: ${err}`);
  });
  send({ type: "ready" });
  // The mic lane accepts pages whose origin the widget announced (see _miclane.py).
  if (model.get("mic_lane")) send({ type: "lane", origin: location.origin });

  return () => {
    model.off("msg:custom", onCustom);
    for (const [name, f] of listeners) model.off(name, f);
    if (mic.power === "on") send({ type: "mic_state", state: "off", reason: "view removed" });
    devices.destroy();
    if (link) link.close();
    engine.destroy();
  };
}

export default { render };
