// @ts-check
// DOM helpers shared by the live widget (widget.js) and the replay view (replay.js): element
// building, tabs, the notice line, icons, event-log row cells, a tool call's transcript line.

import { ARROWS } from "./format.js";

/**
 * An element with attributes and children. `class` sets the class name, `on<event>` adds a
 * listener, a non-string value of a DOM property (`hidden: true`) sets the property, anything else
 * is an attribute (`true` as an empty one); `undefined`, `null` and `false` values and children
 * are left out.
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== "string") /** @type {any} */ (e)[k] = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

/**
 * `h` for an element whose own type the caller needs (an input's `value`, a select's `options`).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, attrs = {}, ...children) {
  return /** @type {HTMLElementTagNameMap[K]} */ (h(tag, attrs, ...children));
}

/**
 * A tab bar (`.rtnb-tabs`, one `.rtnb-tab` button per name) and one `.rtnb-pane
 * .rtnb-pane-<name>` per name. `show(name)` marks that tab `.rtnb-active`, hides the other panes,
 * then calls `onShow(name)`; clicking a tab shows it. The caller places `tabs` and the panes.
 * @param {string[]} names
 * @param {(name: string) => void} [onShow]
 * @returns {{tabs: HTMLElement, panes: Record<string, HTMLElement>,
 *   tabBtns: Record<string, HTMLElement>, show: (name: string) => void}}
 */
export function makeTabs(names, onShow) {
  /** @type {Record<string, HTMLElement>} */
  const panes = {};
  /** @type {Record<string, HTMLElement>} */
  const tabBtns = {};
  const tabs = h("div", { class: "rtnb-tabs", role: "tablist" });
  for (const name of names) {
    tabBtns[name] = h("button", { class: "rtnb-tab", type: "button", role: "tab", onclick: () => show(name) }, name);
    tabs.append(tabBtns[name]);
    panes[name] = h("div", { class: `rtnb-pane rtnb-pane-${name.toLowerCase()}`, role: "tabpanel" });
  }
  /** @param {string} name */
  function show(name) {
    for (const n of names) {
      tabBtns[n].classList.toggle("rtnb-active", n === name);
      panes[n].hidden = n !== name;
    }
    if (onShow) onShow(name);
  }
  return { tabs, panes, tabBtns, show };
}

/**
 * The notice line (`.rtnb-notice`): `show(text, level)` sets it, `show(null)` hides it.
 * @returns {{el: HTMLElement, show: (text: string | null, level?: string) => void}}
 */
export function noticeLine() {
  const line = h("div", { class: "rtnb-notice", hidden: true });
  return {
    el: line,
    show(text, level = "info") {
      line.hidden = !text;
      line.textContent = text || "";
      line.className = `rtnb-notice rtnb-${level}`;
    },
  };
}

/** Material icons (Apache 2.0) as inline SVG: emoji are missing from many fonts. */
const ICONS = {
  mic: "M12 14c1.66 0 3-1.34 3-3V5c0-1.66-1.34-3-3-3S9 3.34 9 5v6c0 1.66 1.34 3 3 3zm5.3-3c0 3-2.54 5.1-5.3 5.1S6.7 14 6.7 11H5c0 3.41 2.72 6.23 6 6.72V21h2v-3.28c3.28-.48 6-3.3 6-6.72h-1.7z",
  micOff: "M19 11h-1.7c0 .74-.16 1.43-.43 2.05l1.23 1.23c.56-.98.9-2.09.9-3.28zm-4.02.17c0-.06.02-.11.02-.17V5c0-1.66-1.34-3-3-3S9 3.34 9 5v.18l5.98 5.99zM4.27 3 3 4.27l6.01 6.01V11c0 1.66 1.33 3 2.99 3 .22 0 .44-.03.65-.08l1.66 1.66c-.71.33-1.5.52-2.31.52-2.76 0-5.3-2.1-5.3-5.1H5c0 3.41 2.72 6.23 6 6.72V21h2v-3.28c.91-.13 1.77-.45 2.54-.9L19.73 21 21 19.73 4.27 3z",
  stop: "M6 6h12v12H6z",
  send: "M2.01 21 23 12 2.01 3 2 10l15 2-15 2z",
  info: "M12 2C6.48 2 2 6.48 2 12s4.48 10 10 10 10-4.48 10-10S17.52 2 12 2zm1 15h-2v-6h2v6zm0-8h-2V7h2v2z",
};

/** An icon and a label (`.rtnb-icon-label`). @param {keyof typeof ICONS} name @param {string} label */
export function iconLabel(name, label) {
  const span = h("span", { class: "rtnb-icon-label" });
  span.innerHTML = `<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true"><path fill="currentColor" d="${ICONS[name]}"/></svg>`;
  span.append(label);
  return span;
}

/**
 * The cells of an event-log row: source arrow, time, type, a `×n` badge for a collapsed run, the
 * item id.
 * @param {{source: string, time: string, type: string, count?: number, itemId?: string | null}} ev
 * @returns {(HTMLElement | null)[]}
 */
export function eventCells({ source, time, type, count = 1, itemId }) {
  return [
    h("span", { class: `rtnb-arrowcol rtnb-src-${source}`, title: source }, ARROWS[source] || "?"),
    h("span", { class: "rtnb-t" }, time),
    h("span", { class: "rtnb-type" }, type),
    count > 1 ? h("span", { class: "rtnb-badge" }, `×${count}`) : null,
    itemId ? h("span", { class: "rtnb-muted" }, itemId) : null,
  ];
}

/**
 * A function call as one transcript line: `tool name(arguments) → output`, the output taken from
 * the call itself or from the matching `function_call_output` item (an ellipsis while pending).
 * @param {{id: string, name?: string, arguments?: string, call_id?: string, output?: any}} it
 * @param {Iterable<{type?: string, call_id?: string, output?: any}>} items every item shown
 * @returns {HTMLElement}
 */
export function toolCallNode(it, items) {
  const output = toolOutput(it, items);
  return h("div", { class: "rtnb-item rtnb-toolcall", "data-item": it.id },
    h("span", { class: "rtnb-role" }, "tool"),
    h("code", { class: "rtnb-text" }, `${it.name || "?"}(${it.arguments || ""})`),
    output != null ? h("span", { class: "rtnb-arrow" }, " → ") : h("span", { class: "rtnb-pending" }, " …"),
    output != null ? h("code", {}, String(output)) : null);
}

/**
 * A call's output: its own, or that of the `function_call_output` item with its call id (null
 * while pending).
 * @param {{call_id?: string, output?: any}} call
 * @param {Iterable<{type?: string, call_id?: string, output?: any}>} items
 * @returns {any}
 */
export function toolOutput(call, items) {
  const out = [...items].find((o) => o.type === "function_call_output" && o.call_id === call.call_id);
  return call.output ?? (out ? out.output : null);
}
