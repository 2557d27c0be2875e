// Device selection (devices.js): the selectors' entries, the remembered choice, the constraints.
// `node --test tests/js/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  STORAGE_KEYS,
  canChooseOutput,
  chooseDevice,
  deviceOptions,
  loadChoice,
  micConstraints,
  saveChoice,
} from "../../realtime_nb/widget/devices.js";

/** What Chromium's fake devices list (--use-fake-device-for-media-stream), permission granted. */
const FAKE = [
  { kind: "audioinput", label: "Fake Default Audio Input", deviceId: "default" },
  { kind: "audioinput", label: "Fake Audio Input 1", deviceId: "in1" },
  { kind: "audioinput", label: "Fake Audio Input 2", deviceId: "in2" },
  { kind: "videoinput", label: "fake_device_0", deviceId: "cam" },
  { kind: "audiooutput", label: "Fake Default Audio Output", deviceId: "default" },
  { kind: "audiooutput", label: "Fake Audio Output 1", deviceId: "out1" },
];

/** A Storage with getItem/setItem over a Map. */
function memoryStore() {
  const m = new Map();
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), m };
}

test("deviceOptions: the default first, named after the browser's default, each device once", () => {
  assert.deepEqual(deviceOptions(FAKE, "audioinput"), [
    { id: "", label: "Fake Default Audio Input" },
    { id: "in1", label: "Fake Audio Input 1" },
    { id: "in2", label: "Fake Audio Input 2" },
  ]);
  assert.deepEqual(deviceOptions(FAKE, "audiooutput"), [
    { id: "", label: "Fake Default Audio Output" },
    { id: "out1", label: "Fake Audio Output 1" },
  ]);
  // Listed twice (Chrome's "communications" alias has its own id; a repeat does not).
  assert.equal(deviceOptions([...FAKE, FAKE[1]], "audioinput").length, 3);
});

test("deviceOptions before permission: hidden labels are numbered, placeholder ids dropped", () => {
  const hidden = [
    { kind: "audioinput", label: "", deviceId: "" }, // Chrome's placeholder without permission
    { kind: "audioinput", label: "", deviceId: "a" },
    { kind: "audioinput", label: "", deviceId: "b" },
    { kind: "audiooutput", label: "", deviceId: "" },
  ];
  assert.deepEqual(deviceOptions(hidden, "audioinput"), [
    { id: "", label: "System default" },
    { id: "a", label: "Microphone 1" },
    { id: "b", label: "Microphone 2" },
  ]);
  assert.deepEqual(deviceOptions(hidden, "audiooutput"), [{ id: "", label: "System default" }]);
  assert.deepEqual(deviceOptions([], "audiooutput"), [{ id: "", label: "System default" }]);
});

test("chooseDevice: the remembered one by id, else by label, else the default", () => {
  const options = deviceOptions(FAKE, "audioinput");
  assert.equal(chooseDevice(options, null), "");
  assert.equal(chooseDevice(options, { id: "in2", label: "Fake Audio Input 2" }), "in2");
  // The site's data was cleared: same device, new id.
  assert.equal(chooseDevice(options, { id: "old-id", label: "Fake Audio Input 1" }), "in1");
  // Unplugged: the default, without forgetting the choice (the caller keeps the stored one).
  assert.equal(chooseDevice(options, { id: "usb", label: "USB headset" }), "");
});

test("a choice is remembered per kind, and survives bad or missing storage", () => {
  const store = memoryStore();
  assert.equal(loadChoice(store, "audioinput"), null);
  assert.ok(saveChoice(store, "audioinput", { id: "in1", label: "Fake Audio Input 1" }));
  assert.ok(saveChoice(store, "audiooutput", { id: "out1", label: "Fake Audio Output 1" }));
  assert.deepEqual(loadChoice(store, "audioinput"), { id: "in1", label: "Fake Audio Input 1" });
  assert.deepEqual(loadChoice(store, "audiooutput"), { id: "out1", label: "Fake Audio Output 1" });
  assert.ok(store.m.has(STORAGE_KEYS.audioinput) && store.m.has(STORAGE_KEYS.audiooutput));
  // Something else under the key, a store that throws (sandboxed frame), none at all.
  store.setItem(STORAGE_KEYS.audioinput, "{not json");
  assert.equal(loadChoice(store, "audioinput"), null);
  store.setItem(STORAGE_KEYS.audioinput, JSON.stringify({ id: 3 }));
  assert.equal(loadChoice(store, "audioinput"), null);
  const throwing = { getItem() { throw new Error("SecurityError"); }, setItem() { throw new Error("QuotaExceeded"); } };
  assert.equal(loadChoice(throwing, "audioinput"), null);
  assert.equal(saveChoice(throwing, "audioinput", { id: "x", label: "x" }), false);
  assert.equal(saveChoice(null, "audioinput", { id: "x", label: "x" }), false);
});

test("micConstraints name the device exactly, only when one is chosen", () => {
  const opts = { echoCancellation: false, noiseSuppression: true, autoGainControl: true };
  assert.deepEqual(micConstraints(opts, ""), { channelCount: 1, ...opts });
  assert.deepEqual(micConstraints(opts, "in2"), { channelCount: 1, ...opts, deviceId: { exact: "in2" } });
});

test("canChooseOutput: only with setSinkId", () => {
  assert.equal(canChooseOutput({ setSinkId() {} }), true);
  assert.equal(canChooseOutput({}), false);
  assert.equal(canChooseOutput(null), false);
});
