// @ts-check
// The transcript, shared by the live widget and the replay view: one node per conversation item
// (what was said, what of it was heard before a cut), in the conversation's order; and the live
// widget's tool cards.

import { fmtSeconds, pretty } from "./format.js";
import { h, toolCallNode, toolOutput } from "./ui.js";

/** @typedef {import("./types.js").Item} Item */
/** @typedef {{played_ms: number, reason: string}} Played */

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
  const text = it.text || "";
  // Cut once the session asked the server to truncate (confirmed or not yet).
  const cutMs = it.truncated ? it.truncated_ms : it.truncate_requested_ms;
  const isCut = cutMs != null || !!it.truncated;
  /** @type {(Node | string)[]} */
  let body;
  if (!text) {
    body = [h("em", {}, it.status === "in_progress" ? "…" : it.has_audio ? "(audio)" : kind)];
  } else if (isCut && typeof it.heard_text === "string" && text.startsWith(it.heard_text)) {
    body = [it.heard_text,
      h("span", { class: "rtnb-unheard", title: "Never heard: playback was cut here" }, text.slice(it.heard_text.length))];
  } else {
    body = [text];
  }
  return h("div", {
    class: `rtnb-item rtnb-${role}${isCut ? " rtnb-truncated" : ""}`,
    "data-item": it.id,
    "data-played": played ? String(played.played_ms) : undefined,
    "data-played-reason": played ? played.reason : undefined,
  },
    h("span", { class: "rtnb-role" }, role),
    h("span", { class: "rtnb-text" }, ...body),
    isCut
      ? h("span", { class: "rtnb-cut", title: "Interrupted: the model was told only this much was heard" },
        `✂ cut at ${fmtSeconds(cutMs ?? played?.played_ms ?? 0)}`)
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
    const frag = document.createDocumentFragment();
    for (const id of this.order) {
      const n = this.nodes.get(id);
      if (n) frag.append(n);
    }
    c.replaceChildren(frag);
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
