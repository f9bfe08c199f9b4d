// Pure helpers of the Grok Imagine (fal) web extension, in one place for the extension and its tests:
// no ComfyUI imports, tested with vitest + jsdom.

export * from "./grok_after_run.js";
export * from "./grok_prices.js";
export * from "./grok_routes.js";
export * from "./grok_settings.js";
