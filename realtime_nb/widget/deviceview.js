// @ts-check
// The live widget's device row: a microphone selector and an output (speakers) selector, filled
// from enumerateDevices() (again when devices change, and once the microphone is allowed: labels
// appear then), each choice remembered in this browser. What a choice does to the audio is
// widget.js's and engine.js's; which device to use and what to remember is devices.js's.

import { OUTPUT_UNSUPPORTED, browserStore, chooseDevice, deviceOptions, loadChoice, saveChoice } from "./devices.js";
import { el, h } from "./ui.js";

/** @typedef {import("./devices.js").DeviceKind} DeviceKind */
/** @typedef {import("./devices.js").DeviceOption} DeviceOption */
/** @typedef {import("./devices.js").Store} Store */

export class DevicePicker {
  /**
   * @param {{input: (id: string) => void, output: (id: string) => void}} on the user chose a device
   * @param {{outputSupported: boolean, micProblem: string | null}} can what this browser allows
   */
  constructor(on, can) {
    this.on = on;
    this.can = can;
    this.store = browserStore();
    /** @type {Record<DeviceKind, DeviceOption[]>} */
    this.options = { audioinput: [], audiooutput: [] };
    this.input = el("select", { class: "rtnb-device rtnb-device-input", title: "Microphone", "aria-label": "Microphone" });
    this.output = el("select", { class: "rtnb-device rtnb-device-output", title: "Speakers", "aria-label": "Speakers" });
    this.outputNote = h("span", { class: "rtnb-muted rtnb-device-note", hidden: true });
    this.el = h("div", { class: "rtnb-devices" },
      h("label", { class: "rtnb-device-field" }, h("span", { class: "rtnb-muted" }, "Microphone"), this.input),
      h("label", { class: "rtnb-device-field" }, h("span", { class: "rtnb-muted" }, "Speakers"), this.output),
      this.outputNote);
    if (can.micProblem) {
      this.input.disabled = true;
      this.input.title = `Microphone unavailable: ${can.micProblem}`;
    }
    if (!can.outputSupported) {
      this.output.disabled = true;
      this.output.title = OUTPUT_UNSUPPORTED;
      this.outputNote.textContent = "(the browser's default output: it cannot choose another)";
      this.outputNote.hidden = false;
    }
    this.input.addEventListener("change", () => this._chose("audioinput", this.input));
    this.output.addEventListener("change", () => this._chose("audiooutput", this.output));
    this._onDeviceChange = () => {
      this.refresh().catch(() => {});
    };
    const md = typeof navigator !== "undefined" ? navigator.mediaDevices : undefined;
    md?.addEventListener?.("devicechange", this._onDeviceChange);
  }

  /** The microphone to open ("" for the system default). */
  get inputId() {
    return chooseDevice(this.options.audioinput, loadChoice(this.store, "audioinput"));
  }

  /** The output to play on ("" for the system default). */
  get outputId() {
    return chooseDevice(this.options.audiooutput, loadChoice(this.store, "audiooutput"));
  }

  /**
   * List the devices again (labels appear once the microphone is allowed; devices come and go).
   * @returns {Promise<void>}
   */
  async refresh() {
    const md = typeof navigator !== "undefined" ? navigator.mediaDevices : undefined;
    if (!md || !md.enumerateDevices) {
      this._fill(this.input, [{ id: "", label: "Unavailable here" }], "");
      this._fill(this.output, [{ id: "", label: "System default" }], "");
      return;
    }
    const devices = await md.enumerateDevices();
    this.options = { audioinput: deviceOptions(devices, "audioinput"), audiooutput: deviceOptions(devices, "audiooutput") };
    this._fill(this.input, this.options.audioinput, this.inputId);
    this._fill(this.output, this.can.outputSupported ? this.options.audiooutput : [{ id: "", label: "System default" }],
      this.can.outputSupported ? this.outputId : "");
  }

  /** @param {HTMLSelectElement} sel @param {DeviceOption[]} options @param {string} chosen */
  _fill(sel, options, chosen) {
    sel.replaceChildren(...options.map((o) => h("option", { value: o.id }, o.label)));
    sel.value = chosen;
  }

  /** @param {DeviceKind} kind @param {HTMLSelectElement} sel */
  _chose(kind, sel) {
    const option = this.options[kind].find((o) => o.id === sel.value) || { id: "", label: "" };
    saveChoice(this.store, kind, option);
    if (kind === "audioinput") this.on.input(option.id);
    else this.on.output(option.id);
  }

  /** The label of a device of a kind ("" when unknown). @param {DeviceKind} kind @param {string} id */
  label(kind, id) {
    const o = this.options[kind].find((x) => x.id === id);
    return o ? o.label : "";
  }

  destroy() {
    const md = typeof navigator !== "undefined" ? navigator.mediaDevices : undefined;
    md?.removeEventListener?.("devicechange", this._onDeviceChange);
  }
}
