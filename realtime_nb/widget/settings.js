// @ts-check
// The live widget's Settings tab: instructions, voice, turn detection, the mic's processing
// switches; and which of them the user changed.

import { el, h } from "./ui.js";

export const VOICES = ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"];
/** Turn detection modes: [value, label]. */
export const MODES = [
  ["push_to_talk", "Push to talk"],
  ["server_vad", "Hands-free · server VAD"],
  ["semantic_vad", "Hands-free · semantic VAD"],
];
const MIC_OPTIONS = {
  echoCancellation: "Echo cancellation",
  noiseSuppression: "Noise suppression",
  autoGainControl: "Automatic gain",
};

/**
 * The settings the user changed, and only those: the API refuses a whole session.update that
 * names a new voice once the assistant has spoken, so resending the voice would also lose the
 * other edits.
 * @param {{instructions: string, voice: string, mode: string}} form
 * @param {{instructions?: string, voice?: string}} settings in effect
 * @param {string} mode in effect
 * @returns {Record<string, string>}
 */
export function changedSettings(form, settings, mode) {
  /** @type {Record<string, string>} */
  const changed = {};
  if (form.instructions !== (settings.instructions || "")) changed.instructions = form.instructions;
  if (form.voice && form.voice !== settings.voice) changed.voice = form.voice;
  if (form.mode !== mode) changed.mode = form.mode;
  return changed;
}

export class SettingsPane {
  /**
   * @param {HTMLElement} pane
   * @param {{apply: () => void, micOption: (opts: Record<string, boolean>) => void}} on
   */
  constructor(pane, on) {
    this.instructions = el("textarea", { class: "rtnb-instructions", rows: 4 });
    this.voice = el("select", { class: "rtnb-voice" }, ...VOICES.map((v) => h("option", { value: v }, v)));
    this.vad = el("select", { class: "rtnb-vad" }, ...MODES.map(([v, label]) => h("option", { value: v }, label)));
    /** @type {Record<string, HTMLInputElement>} */
    this.micChecks = {};
    const micOpts = h("div", { class: "rtnb-micopts" });
    for (const [key, label] of Object.entries(MIC_OPTIONS)) {
      const cb = el("input", { type: "checkbox", onchange: () => on.micOption(this.micOptions()) });
      this.micChecks[key] = cb;
      micOpts.append(h("label", {}, cb, ` ${label}`));
    }
    const applyBtn = h("button", { class: "rtnb-btn rtnb-apply", type: "button", onclick: on.apply }, "Apply");
    this.instructions.addEventListener("keydown", (e) => e.stopPropagation()); // not a notebook shortcut
    pane.append(
      h("label", { class: "rtnb-field" }, h("span", {}, "Instructions"), this.instructions),
      h("div", { class: "rtnb-row" },
        h("label", { class: "rtnb-field" }, h("span", {}, "Voice"), this.voice),
        h("label", { class: "rtnb-field" }, h("span", {}, "Turn detection"), this.vad),
        applyBtn),
      h("div", { class: "rtnb-field" }, h("span", {}, "Microphone processing (applies live)"), micOpts),
    );
  }

  /** @returns {Record<string, boolean>} */
  micOptions() {
    /** @type {Record<string, boolean>} */
    const opts = {};
    for (const [k, cb] of Object.entries(this.micChecks)) opts[k] = cb.checked;
    return opts;
  }

  /** @returns {{instructions: string, voice: string, mode: string}} */
  form() {
    return { instructions: this.instructions.value, voice: this.voice.value, mode: this.vad.value };
  }

  /**
   * Show the settings in effect (the instructions only while the user is not editing them).
   * @param {{instructions?: string, voice?: string}} settings @param {Record<string, boolean>} micOptions
   */
  show(settings, micOptions) {
    if (document.activeElement !== this.instructions) this.instructions.value = settings.instructions || "";
    const voice = settings.voice;
    if (voice && ![...this.voice.options].some((o) => o.value === voice)) {
      this.voice.append(h("option", { value: voice }, voice));
    }
    if (voice) this.voice.value = voice;
    for (const [k, cb] of Object.entries(this.micChecks)) cb.checked = micOptions[k] !== false;
  }
}
