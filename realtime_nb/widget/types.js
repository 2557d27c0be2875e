// @ts-check
// Shapes shared by the front-end modules, as JSDoc typedefs only: nothing imports this file at run
// time (the loader follows `import ... from` statements, not JSDoc `import("./types.js")` types).

/**
 * The part of anywidget's model the views use.
 * @typedef {{get(k: string): any, set(k: string, v: any): void, save_changes(): void,
 *   on(e: string, f: Function): void, off(e?: string, f?: Function): void,
 *   send(msg: any, callbacks?: any, buffers?: (ArrayBuffer | ArrayBufferView)[]): void}} Model
 */

/**
 * A conversation item as the kernel sends it (live `items` / `snapshot`, replay `state`).
 * @typedef {{id: string, type?: string, role?: string, status?: string, text?: string | null,
 *   truncated?: boolean, truncated_ms?: number, truncate_requested_ms?: number, heard_text?: string,
 *   played_ms?: number, has_audio?: boolean, pending?: boolean, name?: string, call_id?: string,
 *   arguments?: string, output?: any}} Item
 */

/**
 * One entry of the live event log (`events` / `snapshot`).
 * @typedef {{seq: number, t_ms: number, source: string, type: string, item_id: string | null,
 *   response_id: string | null, data: any}} LogEvent
 */

/**
 * What a view's render() gets from anywidget, and what it may return: a cleanup function.
 * @typedef {{model: Model, el: HTMLElement}} RenderContext
 * @typedef {(ctx: RenderContext) => Promise<(() => void) | void> | (() => void) | void} Render
 */

export {};
