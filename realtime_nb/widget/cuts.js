// @ts-check
// One `played` report per cut: pure, no DOM, no audio (widget.js sends what this decides;
// node --test covers it).
//
// Every item the view plays ends in one report of how much of it was heard: "finished" when it
// played out, "interrupted" / "stopped" when the view cut it. The kernel truncates the item on the
// server from that report, so a second report for the same cut (a flush racing the item's end, the
// stop button after an interruption) must not go out. Audio of a cut item still on its way (sent
// before the kernel heard of the cut) must not play again either.

/** @typedef {"interrupted" | "stopped" | "finished"} PlayedReason */
/** @typedef {{item_id: string, played_ms: number, reason: PlayedReason}} PlayedReport */

export class PlayedReports {
  constructor() {
    /** @type {Map<string, {played_ms: number, reason: PlayedReason}>} the last report per item */
    this.played = new Map();
    /** @type {Set<string>} items this view cut */
    this.cut = new Set();
    /** @type {string | null} the item whose audio is playing now */
    this.current = null;
  }

  /** The first sample of an item reached the output. @param {string} itemId */
  started(itemId) {
    this.current = itemId;
  }

  /**
   * An item played to its end.
   * @param {string} itemId @param {number} playedMs
   * @returns {PlayedReport | null} the report to send, if any
   */
  finished(itemId, playedMs) {
    const r = this.report(itemId, playedMs, "finished");
    if (this.current === itemId) this.current = null;
    return r;
  }

  /** A flush (interruption or stop) is starting: what plays now is cut, whatever the flush returns. */
  cutting() {
    if (this.current) this.cut.add(this.current);
  }

  /**
   * The flush returned the items it dropped.
   * @param {{itemId: string, playedMs: number}[]} flushed
   * @param {"interrupted" | "stopped"} reason
   * @returns {PlayedReport[]} the reports to send (none for an item already cut and reported)
   */
  cutDone(flushed, reason) {
    this.current = null;
    /** @type {PlayedReport[]} */
    const out = [];
    for (const f of flushed) {
      this.cut.add(f.itemId);
      const r = this.report(f.itemId, f.playedMs, reason);
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * Whether audio of this item may still be played (it was not cut here).
   * @param {string} itemId
   */
  accepts(itemId) {
    return !this.cut.has(itemId);
  }

  /**
   * Record a report unless the item was already cut and reported (one report per cut; a
   * "finished" report may be followed by a cut of audio that came after it).
   * @param {string} itemId @param {number} ms @param {PlayedReason} reason
   * @returns {PlayedReport | null}
   */
  report(itemId, ms, reason) {
    const prev = this.played.get(itemId);
    if (prev && prev.reason !== "finished") return null;
    const played = Math.round(ms * 10) / 10;
    this.played.set(itemId, { played_ms: played, reason });
    return { item_id: itemId, played_ms: played, reason };
  }
}
