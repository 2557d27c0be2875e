// @ts-check
// The transcript, shared by the live widget and the replay view: one node per conversation item
// (what was said, what of it was heard before a cut), in the conversation's order; and the live
// widget's tool cards.

import { fmtSeconds, pretty } from "./format.js";
import { h, toolCallNode, toolOutput } from "./ui.js";

/** @typedef {import("./types.js").Item} Item */
/** @typedef {{played_ms: number, reason: string}} Played */

/** Shown while an item's words are still to come (its speech is going on or being transcribed). */
export const SPEAKING = "(speaking…)";

/**
 * What a message's line says, pure: the words `heard`, the words `unheard` (cut off before the
 * listener heard them: what the model was told was not heard), where the cut was (`cutMs`, null
 * when not cut or not known), and a `placeholder` while there are no words (yet).
 *
 * The heard part is the kernel's estimate (`heard_text`, by the fraction of audio played) moved
 * back to the start of the word it falls in: a word cut in the middle was not understood.
 * @param {Item} it
 * @param {Played} [played] what this view reported of the item's playback
 * @returns {{heard: string, unheard: string, cut: boolean, cutMs: number | null, pending: boolean,
 *   placeholder: string | null}}
 */
export function lineText(it, played) {
  const text = it.text || "";
  // Cut once the session asked the server to truncate (confirmed or not yet).
  const cutMs = (it.truncated ? it.truncated_ms : it.truncate_requested_ms) ?? null;
  const cut = cutMs != null || !!it.truncated;
  const pending = !!it.pending;
  let placeholder = null;
  if (!text) {
    placeholder = pending ? SPEAKING : it.status === "in_progress" ? "…" : it.has_audio ? "(audio)" : it.type || "message";
  }
  let heard = text;
  let unheard = "";
  if (cut && typeof it.heard_text === "string" && text.startsWith(it.heard_text)) {
    let at = it.heard_text.length;
    if (at < text.length && /\S/.test(text[at]) && at > 0 && /\S/.test(text[at - 1])) {
      while (at > 0 && /\S/.test(text[at - 1])) at--;
    }
    heard = text.slice(0, at);
    unheard = text.slice(at);
  }
  return { heard, unheard, cut, cutMs: cut ? (cutMs ?? played?.played_ms ?? null) : null, pending, placeholder };
}

/**
 * One transcript line, or null for an item that is not a line of its own (a function call's
 * output shows on the call's line).
 * @param {Item} it
 * @param {Iterable<Item>} items every item shown (a call finds its output among them)
 * @param {Played} [played] what this view reported of the item's playback
 * @returns {HTMLElement | null}
 */
export function itemNode(it, items, played) {
  const kind = it.type || "message";
  if (kind === "function_call_output") return null;
  if (kind === "function_call") return toolCallNode(it, items);
  const role = it.role || "system";
  const line = lineText(it, played);
  const isCut = line.cut;
  /** @type {(Node | string)[]} */
  let body;
  if (line.placeholder !== null) {
    body = [h("em", { class: line.pending ? "rtnb-speaking" : undefined }, line.placeholder)];
  } else {
    body = [h("span", { class: line.unheard ? "rtnb-heard" : undefined }, line.heard),
      line.unheard ? h("span", { class: "rtnb-unheard", title: "Never heard: playback was cut here" }, line.unheard) : null,
    ].filter((n) => n !== null);
  }
  return h("div", {
    class: `rtnb-item rtnb-${role}${isCut ? " rtnb-truncated" : ""}${line.pending ? " rtnb-pending-item" : ""}`,
    "data-item": it.id,
    "data-played": played ? String(played.played_ms) : undefined,
    "data-played-reason": played ? played.reason : undefined,
  },
    h("span", { class: "rtnb-role" }, role),
    h("span", { class: "rtnb-text" }, ...body),
    line.pending && line.placeholder === null ? h("span", { class: "rtnb-speaking", title: "still speaking" }, " …") : null,
    isCut
      ? h("span", { class: "rtnb-cut", title: "Interrupted: the model was told only this much was heard" },
        line.cutMs == null ? "✂ cut" : `✂ cut at ${fmtSeconds(line.cutMs)}`)
      : null);
}

/**
 * The items of a conversation and their nodes in a container, kept in the kernel's order.
 *
 * `scroll`: "stick" keeps the view at the bottom if it was there (the live conversation grows at
 * the bottom while the user may read above); "follow" always shows the latest item, on the next
 * frame (the replay's playhead: scrolling reads the layout, so it waits for a frame that lays
 * out anyway rather than forcing a layout of the whole notebook).
 */
export class Transcript {
  /**
   * @param {HTMLElement} container
   * @param {HTMLElement} empty shown while there is no item
   * @param {{scroll: "stick" | "follow", played?: (id: string) => Played | undefined,
   *   onPaint?: () => void}} options
   */
  constructor(container, empty, options) {
    this.container = container;
    this.empty = empty;
    this.options = options;
    /** @type {Map<string, Item>} */
    this.items = new Map();
    /** @type {Map<string, HTMLElement>} */
    this.nodes = new Map();
    /** @type {string[]} */
    this.order = [];
    this._scrollQueued = false;
    /** @type {HTMLElement[]} the nodes in the container, in order, as last painted */
    this._painted = [];
  }

  /**
   * Take changed items and the current order (`full`: these are all the items), then repaint.
   * @param {Item[]} changed @param {string[]} order @param {boolean} [full]
   */
  apply(changed, order, full = false) {
    if (full) {
      this.items.clear();
      this.nodes.clear();
    }
    this.order = order;
    for (const it of changed) {
      this.items.set(it.id, it);
      this._draw(it.id);
      if (it.type === "function_call_output") {
        // The call this output belongs to shows it.
        for (const other of this.items.values()) {
          if (other.type === "function_call" && other.call_id === it.call_id) this._draw(other.id);
        }
      }
    }
    const keep = new Set(order);
    for (const id of [...this.items.keys()]) {
      if (!keep.has(id)) {
        this.items.delete(id);
        this.nodes.delete(id);
      }
    }
    this.paint();
  }

  /** Redraw one item (its playback report changed). @param {string} id */
  refresh(id) {
    if (!this.items.has(id)) return;
    this._draw(id);
    this.paint();
  }

  /** @param {string} id */
  _draw(id) {
    const it = /** @type {Item} */ (this.items.get(id));
    const node = itemNode(it, this.items.values(), this.options.played?.(id));
    if (node) this.nodes.set(id, node);
    else this.nodes.delete(id);
  }

  paint() {
    const c = this.container;
    const stick = this.options.scroll === "stick" && c.scrollHeight - c.scrollTop - c.clientHeight < 40;
    /** @type {HTMLElement[]} */
    const want = [];
    for (const id of this.order) {
      const n = this.nodes.get(id);
      if (n) want.push(n);
    }
    // A delta redraws one item: swap that node in place rather than re-inserting every item,
    // which would make the browser lay the whole transcript out again for each update.
    const have = this._painted;
    const inPlace = have.length === want.length && c.childElementCount === have.length
      && have.every((n, i) => n === want[i] || (n.parentNode === c && want[i].parentNode !== c));
    if (inPlace) {
      want.forEach((n, i) => {
        if (have[i] !== n) have[i].replaceWith(n);
      });
    } else {
      c.replaceChildren(...want);
    }
    this._painted = want;
    this.empty.hidden = this.order.length > 0;
    if (stick) c.scrollTop = c.scrollHeight;
    if (this.options.scroll === "follow" && !this._scrollQueued) {
      this._scrollQueued = true;
      requestAnimationFrame(() => {
        this._scrollQueued = false;
        c.scrollTop = c.scrollHeight;
      });
    }
    this.options.onPaint?.();
  }

  /** Function calls, in order. @returns {Item[]} */
  calls() {
    return this.order.map((id) => this.items.get(id)).filter(
      /** @returns {it is Item} */ (it) => !!it && it.type === "function_call");
  }
}

/**
 * The Tools tab: one card per call, its arguments and its result (or "running…").
 * @param {Item[]} calls @param {Iterable<Item>} items
 * @returns {HTMLElement[]}
 */
export function toolCards(calls, items) {
  if (!calls.length) return [h("div", { class: "rtnb-empty" }, "No tool calls yet.")];
  const all = [...items];
  return calls.map((call) => {
    const output = toolOutput(call, all);
    return h("div", { class: "rtnb-toolcard" },
      h("div", { class: "rtnb-toolname" }, call.name || "?", h("span", { class: "rtnb-muted" }, ` ${call.call_id || ""}`)),
      h("div", { class: "rtnb-label" }, "arguments"), h("pre", {}, pretty(call.arguments ?? "")),
      h("div", { class: "rtnb-label" }, "result"),
      output != null ? h("pre", {}, pretty(output)) : h("div", { class: "rtnb-pending" }, "running…"));
  });
}
