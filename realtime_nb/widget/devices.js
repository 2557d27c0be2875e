// @ts-check
// Which microphone and which speakers the live widget uses: the choices a browser offers
// (`navigator.mediaDevices.enumerateDevices()`), the one remembered in this browser
// (localStorage), and what the browser can do with them. Pure, no DOM (deviceview.js draws the
// selectors; node --test covers this).

/** @typedef {"audioinput" | "audiooutput"} DeviceKind */
/** @typedef {{deviceId: string, kind: string, label: string}} DeviceInfo the fields of a MediaDeviceInfo used here */
/** One entry of a selector: `id` "" is the system's default device. @typedef {{id: string, label: string}} DeviceOption */
/** @typedef {{getItem(k: string): string | null, setItem(k: string, v: string): void}} Store */

/** localStorage keys: one choice per browser (and origin), whatever the notebook or kernel. */
export const STORAGE_KEYS = Object.freeze({
  audioinput: "realtime_nb.device.audioinput",
  audiooutput: "realtime_nb.device.audiooutput",
});

/** What a device without a label (no permission granted yet) is called, numbered from 1. */
const NOUNS = Object.freeze({ audioinput: "Microphone", audiooutput: "Speakers" });

/** Shown instead of the output selector's choices where the output cannot be chosen. */
export const OUTPUT_UNSUPPORTED =
  "This browser cannot choose the output device (no AudioContext.setSinkId; Chrome and Edge 110+ can): " +
  "audio plays on the system's default output.";

/**
 * The entries of a selector for one kind of device: the system default first (named after the
 * browser's "default" device when it lists one), then each device once. Before the page may use
 * the microphone, browsers hide labels (and often ids): unnamed devices are numbered.
 * @param {Iterable<DeviceInfo>} devices what enumerateDevices() returned
 * @param {DeviceKind} kind
 * @returns {DeviceOption[]}
 */
export function deviceOptions(devices, kind) {
  const mine = [...devices].filter((d) => d.kind === kind);
  const dflt = mine.find((d) => d.deviceId === "default");
  /** @type {DeviceOption[]} */
  const out = [{ id: "", label: dflt && dflt.label ? dflt.label : "System default" }];
  const seen = new Set([""]);
  let unnamed = 0;
  for (const d of mine) {
    // "default" is the entry above; "" ids are the placeholders of a page without permission.
    if (d.deviceId === "default" || seen.has(d.deviceId)) continue;
    seen.add(d.deviceId);
    out.push({ id: d.deviceId, label: d.label || `${NOUNS[kind]} ${++unnamed}` });
  }
  return out;
}

/**
 * The device to use: the remembered one if it is listed (by id, else by label: browsers give a
 * device a new id when the site's data is cleared), else the system default ("").
 * @param {DeviceOption[]} options @param {DeviceOption | null} saved
 * @returns {string}
 */
export function chooseDevice(options, saved) {
  if (!saved) return "";
  if (options.some((o) => o.id === saved.id)) return saved.id;
  const byLabel = saved.label ? options.find((o) => o.id && o.label === saved.label) : undefined;
  return byLabel ? byLabel.id : "";
}

/**
 * The choice remembered in `store` (null when none, or unreadable: a sandboxed page throws on
 * localStorage, and another version may have left something else there).
 * @param {Store | null} store @param {DeviceKind} kind
 * @returns {DeviceOption | null}
 */
export function loadChoice(store, kind) {
  try {
    const raw = store ? store.getItem(STORAGE_KEYS[kind]) : null;
    const v = raw ? JSON.parse(raw) : null;
    return v && typeof v.id === "string" && typeof v.label === "string" ? { id: v.id, label: v.label } : null;
  } catch (_) {
    return null;
  }
}

/**
 * Remember a choice in `store`; false when the store refused (the choice then lasts this view).
 * @param {Store | null} store @param {DeviceKind} kind @param {DeviceOption} choice
 * @returns {boolean}
 */
export function saveChoice(store, kind, choice) {
  try {
    if (!store) return false;
    store.setItem(STORAGE_KEYS[kind], JSON.stringify({ id: choice.id, label: choice.label }));
    return true;
  } catch (_) {
    return false;
  }
}

/**
 * getUserMedia's audio constraints: mono, the processing switches, and the device when one is
 * chosen (`exact`: another device must not stand in for it silently).
 * @param {Record<string, boolean>} options echoCancellation, noiseSuppression, autoGainControl
 * @param {string} deviceId "" for the system default
 * @returns {MediaTrackConstraints}
 */
export function micConstraints(options, deviceId) {
  return deviceId ? { channelCount: 1, ...options, deviceId: { exact: deviceId } } : { channelCount: 1, ...options };
}

/**
 * Whether an AudioContext can send its output to a chosen device.
 * @param {unknown} ctx an AudioContext, or its prototype
 */
export function canChooseOutput(ctx) {
  return !!ctx && typeof (/** @type {any} */ (ctx).setSinkId) === "function";
}

/** localStorage, or null where the page may not use it (sandboxed frames throw on access). @returns {Store | null} */
export function browserStore() {
  try {
    return typeof localStorage === "undefined" ? null : localStorage;
  } catch (_) {
    return null;
  }
}
