// The entry point's module loader (realtime_nb/widget/loader.js), and the module graph it loads:
// every module the front end ships, imported as the browser does it but from data: URLs (Node
// cannot import Blob URLs). `node --test tests/js/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { importModules, importsOf, loadOrder, renderAndReload, rewriteImports } from "../../realtime_nb/widget/loader.js";

const dir = new URL("../../realtime_nb/widget/", import.meta.url);
/** What realtime_nb.widget._sources.module_sources() ships: every .js but the entry, the worklet and clip.js. */
function shipped() {
  /** @type {Record<string, string>} */
  const out = {};
  for (const name of readdirSync(dir).sort()) {
    // As _sources.module_sources: not the entry, the worklet, or a widget's own _esm (clip.js).
    if (name.endsWith(".js") && !["loader.js", "worklet.js", "clip.js"].includes(name)) {
      out[name] = readFileSync(new URL(name, dir), "utf8");
    }
  }
  return out;
}
/** @param {string} source */
const dataUrl = (source) => `data:text/javascript;base64,${Buffer.from(source).toString("base64")}`;

test("importsOf finds static relative imports and re-exports, not JSDoc types or dynamic imports", () => {
  const src = [
    'import { a } from "./a.js";',
    "import {",
    "  b,",
    "} from './b.js';",
    'export { c } from "./c.js";',
    'import "./d.js";',
    'import x from "node:fs";',
    '/** @typedef {import("./types.js").Model} Model */',
    'const later = () => import("./e.js");',
    'import { a2 } from "./a.js";',
  ].join("\n");
  assert.deepEqual(importsOf(src), ["a.js", "b.js", "c.js", "d.js"]);
});

test("loadOrder puts each module after what it imports, and says what is wrong", () => {
  const sources = {
    "main.js": 'import { u } from "./ui.js";\nimport { f } from "./format.js";',
    "ui.js": 'import { f } from "./format.js";',
    "format.js": "export const f = 1;",
    "unused.js": "export const z = 0;",
  };
  assert.deepEqual(loadOrder(sources, "main.js"), ["format.js", "ui.js", "main.js"]);
  assert.throws(() => loadOrder({ "m.js": 'import "./gone.js";' }, "m.js"),
    /m\.js imports \.\/gone\.js, which is not among the modules the kernel sent/);
  assert.throws(() => loadOrder({}, "widget.js"), /sent no module widget\.js/);
  assert.throws(() => loadOrder({ "a.js": 'import "./b.js";', "b.js": 'import "./a.js";' }, "a.js"), /cycle/);
});

test("rewriteImports points relative imports at URLs and leaves the rest", () => {
  const src = 'import { h } from "./ui.js";\nexport * from \'./format.js\';\n// from "./other.js"';
  assert.equal(rewriteImports(src, { "ui.js": "blob:1", "format.js": "blob:2" }),
    'import { h } from "blob:1";\nexport * from \'blob:2\';\n// from "./other.js"');
});

test("importModules loads a graph, each module once, and releases every URL", async () => {
  const token = `loads_${Date.now()}_${Math.random().toString(36).slice(2)}`; // a source Node has not cached
  const sources = {
    "main.js": 'import { n } from "./count.js";\nimport { twice } from "./twice.js";\nexport default { value: twice + n };',
    "twice.js": 'import { n } from "./count.js";\nexport const twice = 2 * n;',
    "count.js": `globalThis.${token} = (globalThis.${token} || 0) + 1;\nexport const n = 7;`,
  };
  /** @type {string[]} */
  const released = [];
  const mod = await importModules(sources, "main.js", dataUrl, (u) => released.push(u));
  assert.equal(mod.default.value, 21);
  assert.equal(/** @type {any} */ (globalThis)[token], 1); // count.js ran once for both importers
  assert.equal(released.length, 3);
  await assert.rejects(importModules({ "m.js": 'import "./x.js";' }, "m.js", dataUrl, (u) => released.push(u)), /x\.js/);
});

test("both views load from what the kernel ships, and every relative import resolves", async () => {
  const sources = shipped();
  for (const main of ["widget.js", "replay.js"]) {
    const order = loadOrder(sources, main);
    assert.equal(order[order.length - 1], main);
    const mod = await importModules(sources, main, dataUrl, () => {});
    assert.equal(typeof mod.default.render, "function", main);
  }
  // Every shipped module is used by one of the views (or holds only types, or is the mic lane's
  // Worker, which engine.js starts from its text).
  const used = new Set([...loadOrder(sources, "widget.js"), ...loadOrder(sources, "replay.js"), "types.js", "lane.js"]);
  assert.deepEqual(Object.keys(sources).filter((n) => !used.has(n)), []);
});

test("a change of _modules renders the view again from the new modules, after the old one's cleanup", async () => {
  /** @type {Map<string, Function>} */
  const handlers = new Map();
  const model = {
    on: (/** @type {string} */ e, /** @type {Function} */ f) => handlers.set(e, f),
    off: (/** @type {string} */ e) => handlers.delete(e),
  };
  /** @type {string[]} */
  const log = [];
  const el = { replaceChildren: () => log.push("cleared"), prepend: () => log.push("error shown") };
  let version = 0;
  const load = async () => {
    const v = ++version;
    if (v === 3) throw new Error("syntax error in the edited file");
    return { default: { render: () => { log.push(`render ${v}`); return () => log.push(`cleanup ${v}`); } } };
  };
  const ctx = /** @type {any} */ ({ model, el });
  const g = /** @type {any} */ (globalThis);
  const saved = [g.document, console.error];
  g.document = { createElement: () => ({}) };
  console.error = () => {};
  try {
    const cleanup = await renderAndReload(ctx, load);
    assert.deepEqual(log, ["cleared", "render 1"]);
    const reload = /** @type {Function} */ (handlers.get("change:_modules"));
    reload();
    reload(); // the second waits for the first
    await new Promise((r) => setTimeout(r, 10));
    // v2 replaced v1; v3 failed to load: v2 stays, and the failure is shown.
    assert.deepEqual(log.slice(2), ["cleanup 1", "cleared", "render 2", "error shown"]);
    cleanup();
    assert.equal(log[log.length - 1], "cleanup 2");
    assert.equal(handlers.has("change:_modules"), false);
  } finally {
    [g.document, console.error] = saved;
  }
});

test("every front-end module is type-checked", () => {
  for (const name of readdirSync(dir).filter((n) => n.endsWith(".js"))) {
    const first = readFileSync(new URL(name, dir), "utf8").split("\n", 1)[0];
    assert.equal(first, "// @ts-check", name);
  }
});
