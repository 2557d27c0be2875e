// DOM helpers shared by the live widget (widget.js) and the replay view (replay.js): plain ESM,
// no build step. It arrives as the `_ui_js` trait and each front end imports it from a Blob URL
// (as widget.js loads audio.js), so neither widget needs an HTTP route or a bundler.

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
 * A function call as one transcript line: `tool name(arguments) → output`, the output taken from
 * the call itself or from the matching `function_call_output` item (an ellipsis while pending).
 * @param {{id: string, name?: string, arguments?: string, call_id?: string, output?: any}} it
 * @param {Iterable<{type?: string, call_id?: string, output?: any}>} items every item shown
 * @returns {HTMLElement}
 */
export function toolCallNode(it, items) {
  const out = [...items].find((o) => o.type === "function_call_output" && o.call_id === it.call_id);
  const output = it.output ?? (out ? out.output : null);
  return h("div", { class: "rtnb-item rtnb-toolcall", "data-item": it.id },
    h("span", { class: "rtnb-role" }, "tool"),
    h("code", { class: "rtnb-text" }, `${it.name || "?"}(${it.arguments || ""})`),
    output != null ? h("span", { class: "rtnb-arrow" }, " → ") : h("span", { class: "rtnb-pending" }, " …"),
    output != null ? h("code", {}, String(output)) : null);
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
