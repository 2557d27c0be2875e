// The mic button's state machine (realtime_nb/widget/mic.js). `node --test tests/js/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MicControl, micError } from "../../realtime_nb/widget/mic.js";

const PTT = { ptt: true, muted: false };
const VAD = { ptt: false, muted: false };

test("hands-free: off -> starting -> on -> off, as the button shows it", () => {
  const m = new MicControl();
  assert.equal(m.phase, "off");
  assert.deepEqual([m.view(VAD).label, m.view(VAD).icon, m.view(VAD).live], ["Mic off", "micOff", false]);
  assert.equal(m.click(), "open");
  m.opening();
  assert.equal(m.phase, "starting");
  assert.equal(m.view(VAD).label, "Starting…");
  assert.equal(m.click(), null); // a second click while getUserMedia is pending does nothing
  m.opened();
  assert.deepEqual([m.view(VAD).label, m.view(VAD).icon, m.view(VAD).live], ["Mic on", "mic", true]);
  assert.equal(m.click(), "close");
  m.closed();
  assert.equal(m.phase, "off");
});

test("a failed open returns to off", () => {
  const m = new MicControl();
  m.opening();
  m.failed();
  assert.equal(m.phase, "off");
  assert.equal(m.click(), "open");
});

test("push-to-talk: press, talk, release ends exactly the talk that started", () => {
  const m = new MicControl();
  assert.equal(m.view(PTT).label, "Hold to talk");
  assert.equal(m.press(), true);
  assert.equal(m.press(), false); // key repeat
  assert.equal(m.phase, "ptt-held");
  m.opening();
  m.opened();
  assert.equal(m.view(PTT).live, false); // open, but the gate is still closed
  assert.equal(m.talk(), true);
  assert.equal(m.phase, "talking");
  assert.deepEqual([m.view(PTT).label, m.view(PTT).live], ["Talking…", true]);
  assert.equal(m.release(), true); // close the gate and send "end"
  assert.equal(m.release(), false); // once
  assert.equal(m.phase, "on"); // the mic stays open between presses
  assert.equal(m.view(PTT).label, "Hold to talk");
});

test("a press released before the mic or the flush was ready never starts talking", () => {
  const m = new MicControl();
  m.press();
  m.opening();
  assert.equal(m.release(), false); // nothing started: no "end" to send
  m.opened();
  assert.equal(m.talk(), false); // the press is over: no "start" either
  assert.equal(m.phase, "on");
});

test("closing the mic ends a talk; a page without a mic ignores presses", () => {
  const m = new MicControl();
  m.press();
  m.opened();
  m.talk();
  m.closed();
  assert.equal(m.talking, false);
  const none = new MicControl("this page is not a secure context");
  assert.equal(none.phase, "unavailable");
  assert.equal(none.press(), false);
  const v = none.view(PTT);
  assert.deepEqual([v.label, v.icon, v.disabled], ["No mic", "micOff", true]);
});

test("mute is shown on the mute button", () => {
  const m = new MicControl();
  assert.deepEqual([m.view({ ptt: false, muted: true }).muteLabel, m.view({ ptt: false, muted: true }).muteIcon], ["Muted", "micOff"]);
  assert.deepEqual([m.view(VAD).muteLabel, m.view(VAD).muteIcon], ["Mute", "mic"]);
  assert.match(m.view(PTT).title, /Hold/);
  assert.match(m.view(VAD).title, /Click/);
});

test("micError says why in plain words", () => {
  assert.equal(micError({ name: "NotAllowedError" }).state, "denied");
  assert.equal(micError({ name: "SecurityError" }).state, "denied");
  assert.match(micError({ name: "NotAllowedError" }).why, /denied microphone access/);
  assert.deepEqual(micError({ name: "NotFoundError" }), { state: "error", why: "no microphone was found" });
  assert.deepEqual(micError(new Error("device busy")), { state: "error", why: "device busy" });
  assert.deepEqual(micError("odd"), { state: "error", why: "odd" });
});
