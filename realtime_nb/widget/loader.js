// @ts-check
// The anywidget entry point (`_esm`) of both views, RealtimeWidget and ReplayWidget: plain ESM, no
// build step.
//
// anywidget loads this one file. Every other module of the front end arrives as the `_modules`
// trait ({file name: source}), and `_main` names the one that renders (widget.js, replay.js). Each
// module is imported from a Blob URL after its relative imports are pointed at its dependencies'
// Blob URLs, so the modules are written, type-checked and unit-tested as ordinary ES modules that
// import each other, with no bundler and no HTTP route of their own.
//
// Hot reload (ANYWIDGET_HMR=1): anywidget renders again when this file changes; when any other
// module changes, the kernel sends `_modules` again and every view renders again from it.

/** @typedef {import("./types.js").Model} Model */
/** @typedef {import("./types.js").RenderContext} RenderContext */

/**
 * The relative imports the loader resolves: static `import ... from` and `export ... from` of a
 * sibling file, and bare `import` of one at the start of a line (not dynamic `import()`).
 */
const RELATIVE_IMPORT = /(\bfrom\s*|^\s*import\s*)(["'])\.\/([\w.-]+\.js)\2/gm;

/**
 * File names of the sibling modules a module imports, each once.
 * @param {string} source
 * @returns {string[]}
 */
export function importsOf(source) {
  return [...new Set([...source.matchAll(RELATIVE_IMPORT)].map((m) => m[3]))];
}

/**
 * `main` and the modules it imports, directly or not, each after the modules it imports.
 * @param {Record<string, string>} sources file name -> source
 * @param {string} main
 * @returns {string[]}
 * @throws {Error} a module imports one missing from `sources`, or modules import each other in a
 *   cycle (a Blob URL must exist before the module that imports it is made)
 */
export function loadOrder(sources, main) {
  /** @type {string[]} */
  const order = [];
  /** @type {Map<string, "visiting" | "done">} */
  const seen = new Map();
  /** @param {string} name @param {string | null} from */
  const visit = (name, from) => {
    const state = seen.get(name);
    if (state === "done") return;
    if (state === "visiting") throw new Error(`realtime_nb: modules import each other in a cycle through ${name}`);
    if (!Object.hasOwn(sources, name)) {
      throw new Error(from
        ? `realtime_nb: ${from} imports ./${name}, which is not among the modules the kernel sent`
        : `realtime_nb: the kernel sent no module ${name}`);
    }
    seen.set(name, "visiting");
    for (const dep of importsOf(sources[name])) visit(dep, name);
    seen.set(name, "done");
    order.push(name);
  };
  visit(main, null);
  return order;
}

/**
 * A module's source with its relative imports pointed at the URLs of the modules they name.
 * @param {string} source
 * @param {Record<string, string>} urls file name -> URL
 */
export function rewriteImports(source, urls) {
  return source.replace(RELATIVE_IMPORT, (match, lead, quote, name) =>
    Object.hasOwn(urls, name) ? `${lead}${quote}${urls[name]}${quote}` : match);
}

/** @param {string} source */
function blobUrl(source) {
  return URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
}

/**
 * Import `main` from `sources`, with everything it imports.
 * @param {Record<string, string>} sources file name -> source
 * @param {string} main
 * @param {(source: string) => string} [toUrl] a URL serving a source (Node's tests use data: URLs)
 * @param {(url: string) => void} [release] called on each URL once the modules are loaded
 * @returns {Promise<any>} the module namespace of `main`
 */
export async function importModules(sources, main, toUrl = blobUrl, release = (u) => URL.revokeObjectURL(u)) {
  /** @type {Record<string, string>} */
  const urls = {};
  try {
    for (const name of loadOrder(sources, main)) urls[name] = toUrl(rewriteImports(sources[name], urls));
    return await import(/* webpackIgnore: true */ urls[main]);
  } finally {
    // Loaded (or failed): the module map holds what it needs; the URLs are no longer used.
    for (const url of Object.values(urls)) release(url);
  }
}

/**
 * Render the module `load()` returns into `el`, and again, from a fresh `load()`, whenever
 * `_modules` changes (hot reload): the old view's cleanup runs first, and a reload that fails
 * says so at the top of the view instead of leaving it blank.
 * @param {RenderContext} ctx
 * @param {() => Promise<{default: {render: import("./types.js").Render}}>} load
 * @returns {Promise<() => void>} the cleanup anywidget calls when the view goes
 */
export async function renderAndReload({ model, el }, load) {
  /** @type {(() => void) | void} */
  let cleanup;
  const mount = async () => {
    const main = await load();
    if (typeof cleanup === "function") cleanup();
    cleanup = undefined;
    el.replaceChildren();
    cleanup = await main.default.render({ model, el });
  };
  // The first render's failure is anywidget's to show; a reload's is shown here.
  await mount();
  let reloads = Promise.resolve();
  const reload = () => {
    reloads = reloads.then(mount).catch((err) => {
      console.error("realtime_nb: hot reload failed", err);
      const pre = document.createElement("pre");
      pre.className = "rtnb-notice rtnb-error";
      pre.textContent = `Hot reload failed: ${err && err.stack ? err.stack : err}`;
      el.prepend(pre);
    });
  };
  model.on("change:_modules", reload);
  return () => {
    model.off("change:_modules", reload);
    if (typeof cleanup === "function") cleanup();
  };
}

/** @param {RenderContext} ctx */
function render(ctx) {
  const { model } = ctx;
  return renderAndReload(ctx, () => importModules(model.get("_modules"), model.get("_main")));
}

export default { render };
