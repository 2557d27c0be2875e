// @ts-check
// The microphone button's state machine: pure, no DOM, no audio (widget.js does the I/O the
// transitions call for; node --test covers this).
//
// Power: "off" -> "starting" (getUserMedia pending) -> "on" (open; the capture gate opens for
// hands-free listening or while push-to-talk is held) -> "off". Push-to-talk adds `held` (the button
// or Space is down) and `talking` (the gate is open and the kernel was told "start"): a press
// that ends before the mic or the playback flush is ready never starts talking, and a release
// ends the talk only if it started, so every "start" gets exactly one "end".

/** @typedef {"off" | "starting" | "on"} MicPower */

/**
 * What the controls show for a state.
 * @typedef {{live: boolean, label: string, icon: "mic" | "micOff", title: string,
 *   disabled: boolean, muteLabel: string, muteIcon: "mic" | "micOff"}} MicView
 */

export class MicControl {
  /** @param {string | null} [problem] why this page cannot capture at all (see captureProblem) */
  constructor(problem = null) {
    this.problem = problem;
    /** @type {MicPower} */
    this.power = "off";
    /** push-to-talk: the button or Space is down */
    this.held = false;
    /** push-to-talk: capture open and "start" sent */
    this.talking = false;
  }

  /**
   * Named state, for tests and data attributes.
   * @returns {"unavailable" | "off" | "starting" | "on" | "ptt-held" | "talking"}
   */
  get phase() {
    if (this.problem) return "unavailable";
    if (this.talking) return "talking";
    if (this.held) return "ptt-held";
    return this.power;
  }

  /**
   * A click in hands-free mode: what to do with the mic.
   * @returns {"open" | "close" | null} null while it is starting
   */
  click() {
    if (this.power === "on") return "close";
    if (this.power === "off") return "open";
    return null;
  }

  /** getUserMedia was called. */
  opening() {
    this.power = "starting";
  }

  /** The mic is open. */
  opened() {
    this.power = "on";
  }

  /** Opening failed (denied, no device...). */
  failed() {
    this.power = "off";
  }

  /** The mic was closed (by the user): any push-to-talk press is over too. */
  closed() {
    this.power = "off";
    this.talking = false;
  }

  /**
   * Push-to-talk pressed.
   * @returns {boolean} false when ignored (already held: key repeat; or no mic on this page)
   */
  press() {
    if (this.held || this.problem) return false;
    this.held = true;
    return true;
  }

  /**
   * The mic and playback are ready for a press: start talking, if it is still held.
   * @returns {boolean} false when the press ended meanwhile (nothing to start)
   */
  talk() {
    if (!this.held) return false;
    this.talking = true;
    return true;
  }

  /**
   * Push-to-talk released.
   * @returns {boolean} true when a talk started and must now end (close the gate, send "end")
   */
  release() {
    if (!this.held) return false;
    this.held = false;
    if (!this.talking) return false;
    this.talking = false;
    return true;
  }

  /**
   * What the mic and mute buttons show.
   * @param {{ptt: boolean, muted: boolean}} mode
   * @returns {MicView}
   */
  view({ ptt, muted }) {
    const on = this.power === "on";
    let label;
    if (this.problem) label = "No mic";
    else if (ptt) label = this.talking ? "Talking…" : "Hold to talk";
    else label = on ? "Mic on" : this.power === "starting" ? "Starting…" : "Mic off";
    return {
      live: on && (!ptt || this.talking),
      label,
      icon: this.problem || (!ptt && !on) ? "micOff" : "mic",
      title: ptt ? "Hold (or hold Space) to talk; release to send" : "Click to turn the mic on or off",
      disabled: !!this.problem,
      muteLabel: muted ? "Muted" : "Mute",
      muteIcon: muted ? "micOff" : "mic",
    };
  }
}

/**
 * Why getUserMedia failed, in plain words, and the `mic_state` to report.
 * @param {unknown} err what getUserMedia threw
 * @returns {{state: "denied" | "error", why: string}}
 */
export function micError(err) {
  const e = /** @type {any} */ (err);
  const denied = !!e && (e.name === "NotAllowedError" || e.name === "SecurityError");
  const why = denied
    ? "the browser (or the system) denied microphone access; allow it in the address bar's site settings"
    : e && e.name === "NotFoundError" ? "no microphone was found" : `${e && e.message ? e.message : e}`;
  return { state: denied ? "denied" : "error", why };
}
