// The price badge: a run's price from the table Python serves, and the badge both renderers draw.
// Pure helpers, tested with vitest + jsdom.

// ---------------------------------------------------------------------------------------------
// Prices

const MICRO = 1e6;
export const round6 = (amount) => Math.round(amount * MICRO) / MICRO;

/** "$0.02", "$0.062", "$0.20", "$12.50": cents, or tenths of a cent when a price has them. */
export function formatUsd(amount) {
  let text = round6(Number(amount) || 0).toFixed(3);
  if (text.endsWith("0")) text = text.slice(0, -1);
  return `$${text}`;
}

/** "$0.062–0.066" (one dollar sign, an en dash), or one amount when both ends are the same. */
export function formatUsdRange(low, high) {
  if (round6(low) === round6(high)) return formatUsd(low);
  return `${formatUsd(low)}–${formatUsd(high).slice(1)}`;
}

/** How many requests a node sends for `count` images: at most `perRequest` images each (fal takes 4). */
export const requestCount = (count, perRequest = 4) => Math.ceil(count / perRequest);

/**
 * How many reference images an edit node sends, as [fewest, most]. `image` gives one to three (the
 * first three images of its batch, known only at run time); each connected `image_2` / `image_3`
 * adds one; never more than `max_references` in all.
 */
export function referenceRange(entry, connected = []) {
  const inputs = entry?.reference_inputs ?? [];
  if (!inputs.length) return [0, 0];
  const most = entry.max_references ?? 3;
  const extras = inputs.slice(1).filter((name) => connected.includes(name)).length;
  return [Math.min(most, 1 + extras), most];
}

/** The rates a node's current choice (tier or quality) and resolution bill, or null when unknown. */
export function ratesFor(entry, values = {}) {
  const choices = entry?.choices ?? {};
  const wanted = values[entry?.choice_input];
  const choice = wanted in choices ? wanted : entry?.default_choice;
  const rates = choices[choice];
  if (!rates) return null;
  const resolution = values[entry.resolution_input ?? "resolution"];
  const perImage = rates.per_image?.[resolution] ?? rates.per_image?.["1k"];
  return { choice, endpoint: rates.endpoint, perImage, perReference: rates.per_reference ?? 0 };
}

/**
 * [lowest, highest] USD of one run, or null when the price is unknown: for each of ceil(n/4)
 * requests, its images times the price per image at the resolution, plus the references it sends
 * times the price per reference.
 */
export function runPriceRange(entry, state = {}) {
  const rates = ratesFor(entry, state.values ?? {});
  if (!rates || typeof rates.perImage !== "number") return null;
  const count = imageCount(entry, state);
  const [fewest, most] = referenceRange(entry, state.connected ?? []);
  const requests = requestCount(count, entry.max_images_per_request ?? 4);
  const total = (references) => round6(count * rates.perImage + requests * references * rates.perReference);
  const runs = Math.max(1, state.runs ?? 1);
  return [round6(total(fewest) * runs), round6(total(most) * runs)];
}

/**
 * How many images a run asks for: the count widget's value, whole, within the widget's own range
 * (`state.countRange`, [min, max]; ComfyUI refuses to queue a value outside it), 1 when it is not a
 * number. A crafted workflow's 1e300 is priced as the widget's largest value.
 */
function imageCount(entry, state) {
  const [least, most] = state.countRange ?? [1, Infinity];
  const raw = Math.floor(Number(state.values?.[entry?.count_input ?? "num_images"] ?? 1));
  const count = Math.min(most, Math.max(least, Number.isNaN(raw) ? 1 : raw));
  return Number.isFinite(count) ? count : 1;
}

export const plural = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;

/**
 * The short price label shown on a node before a run, from its pricing entry (served by Python at
 * /grok_imagine/pricing) and its state: `values` (widget values), `countRange` (the count widget's
 * [min, max]), `connected` (names of linked inputs), `countLinked` (num_images comes from a link, so the
 * count is unknown) and `runs` (how many times the node runs, when its prompt comes from a prompt list).
 * Null for nodes this pack does not bill. Its cost never depends on the values: the canvas asks on every
 * frame.
 *
 *   "$0.02 · 1 image"   "$0.08 · 4 images"   "$0.20 · 10 images · 3 requests"
 *   "$0.062–0.066 · 3 images" (an edit: the references are known only at run time)
 *   "$0.12 · 3 prompts × 2 images"   "$0.02/image"
 *
 * A video node's label (`videoLabel`) says the seconds it bills instead of the images.
 */
export function priceLabel(entry, state = {}) {
  if (!entry) return null;
  if (entry.kind) return videoLabel(entry, state);
  const values = state.values ?? {};
  const rates = ratesFor(entry, values);
  const count = imageCount(entry, state);
  const hasReferences = (entry.reference_inputs ?? []).length > 0;
  if (!rates || typeof rates.perImage !== "number") return `${plural(count, "image")} · price unknown`;
  if (state.countLinked) {
    return `${formatUsd(rates.perImage)}/image${hasReferences && rates.perReference ? " + references" : ""}`;
  }
  const [low, high] = runPriceRange(entry, state);
  const parts = [formatUsdRange(low, high)];
  const runs = Math.max(1, state.runs ?? 1);
  parts.push(runs > 1 ? `${plural(runs, "prompt")} × ${plural(count, "image")}` : plural(count, "image"));
  const requests = requestCount(count, entry.max_images_per_request ?? 4);
  if (requests > 1) parts.push(`${requests} requests${runs > 1 ? " each" : ""}`);
  return parts.join(" · ");
}

// ---------------------------------------------------------------------------------------------
// Videos: US dollars per second of output

const SHORT_SIDE = { "480p": 480, "720p": 720, "1080p": 1080 };
const MAX_SOURCE_HOPS = 8;

/** The values of a litegraph node's widgets, by name. */
function widgetValues(node) {
  const values = {};
  for (const widget of node?.widgets ?? []) values[widget.name] = widget.value;
  return values;
}

/** The [min, max] of a node's widget `name`, when the widget states them. */
function widgetRange(node, name) {
  const options = node?.widgets?.find((w) => w.name === name)?.options;
  return typeof options?.min === "number" && typeof options?.max === "number" ? [options.min, options.max] : undefined;
}

/** The index of `node`'s input `name` when a link feeds it, else -1. */
function linkedInput(node, name) {
  const index = (node?.inputs ?? []).findIndex((input) => (input?.widget?.name ?? input?.name) === name);
  return index >= 0 && inputConnected(node, index) ? index : -1;
}

/** The node feeding `node`'s input `name`, or null. */
function originOf(node, name) {
  const index = linkedInput(node, name);
  return index < 0 ? null : node.getInputNode?.(index) ?? null;
}

/**
 * What a video made by `origin` will be, when a Grok video node of this pack makes it from its widgets: its
 * seconds and the shorter side of its frame (`{seconds, short}`), through edits and extensions of such a video.
 * Null when only the run can tell (Load Video, the Video Result node, a duration fed by a link). `entryFor(type)`
 * is the pricing entry of a node type.
 */
export function videoSource(origin, entryFor, hops = 0) {
  if (!origin || hops > MAX_SOURCE_HOPS) return null;
  const entry = entryFor?.(origin.comfyClass ?? origin.type);
  if (!entry?.kind || (entry.count_input && linkedInput(origin, entry.count_input) >= 0)) return null;
  const values = widgetValues(origin);
  const state = { values, countRange: widgetRange(origin, entry.count_input) };
  const resolution = values[entry.resolution_input];
  if (entry.kind === "video" || entry.kind === "reference_video") {
    return SHORT_SIDE[resolution] ? { seconds: imageCount(entry, state), short: SHORT_SIDE[resolution] } : null;
  }
  const input = videoSource(originOf(origin, entry.video_input), entryFor, hops + 1);
  if (!input) return null;
  if (entry.kind === "edit_video") {
    const short = SHORT_SIDE[resolution] ?? Math.min(input.short, SHORT_SIDE[entry.auto_resolution]);
    return { seconds: Math.min(input.seconds, entry.max_input_seconds), short };
  }
  const short = input.short <= entry.small_input_side ? SHORT_SIDE["480p"] : SHORT_SIDE["720p"];
  return { seconds: input.seconds + imageCount(entry, state), short }; // an extension returns the whole video
}

const seconds = (amount) => `${Math.round(amount * 100) / 100} s`;

/**
 * What one run of a video node costs: `{low, high, what}` (what it makes, e.g. "6 s at 720p"), or `{rate}` when
 * the price depends on what only the run knows (an input video of unknown length, a duration fed by a link),
 * or `{note}` when fal has no such video (1080p from grok-imagine-video).
 */
export function videoQuote(entry, state = {}) {
  const values = state.values ?? {};
  const count = imageCount(entry, state);
  const resolution = values[entry.resolution_input];
  const source = state.source ?? null;
  if (entry.kind === "video") {
    const choices = entry.choices ?? {};
    const choice = values[entry.choice_input] in choices ? values[entry.choice_input] : entry.default_choice;
    const withImage = (state.connected ?? []).includes(entry.image_input);
    const rate = choices[choice]?.[withImage ? "image" : "text"];
    const perSecond = rate?.per_second?.[resolution];
    if (typeof perSecond !== "number") {
      return { note: `${resolution}: not with ${choice}${withImage ? " from an image" : ""}` };
    }
    const image = withImage ? " + image" : "";
    if (state.countLinked) return { rate: `${formatUsd(perSecond)}/s at ${resolution}${image}` };
    const price = count * perSecond + (withImage ? rate.per_image : 0);
    return { low: price, high: price, what: `${seconds(count)} at ${resolution}${image}` };
  }
  const rate = entry.rate ?? {};
  if (entry.kind === "reference_video") {
    const perSecond = rate.per_second?.[resolution];
    if (typeof perSecond !== "number") return { note: `${resolution}: not with reference to video` };
    if (state.countLinked) return { rate: `${formatUsd(perSecond)}/s at ${resolution} + references` };
    const [fewest, most] = referenceRange(entry, state.connected ?? []);
    const base = count * perSecond;
    const what = `${seconds(count)} at ${resolution}`;
    return { low: base + fewest * rate.per_image, high: base + most * rate.per_image, what };
  }
  if (entry.kind === "edit_video") {
    const billed = rate.per_second?.[resolution] === undefined ? entry.auto_resolution : resolution;
    const perSecond = (rate.per_second?.[billed] ?? 0) + rate.per_input_second;
    if (!source) {
      const most = formatUsd(perSecond * entry.max_input_seconds);
      return { rate: `${formatUsd(perSecond)}/s of input`, tail: `at most ${most}` };
    }
    const edited = Math.min(source.seconds, entry.max_input_seconds);
    return { low: edited * perSecond, high: edited * perSecond, what: `${seconds(edited)} at ${billed}` };
  }
  // extend_video: its own seconds at the input's resolution, and each second of the input
  const perSecond = Object.values(rate.per_second ?? {});
  const [shortest, longest] = entry.input_seconds;
  if (state.countLinked) {
    return { rate: `${formatUsdRange(Math.min(...perSecond), Math.max(...perSecond))}/s + input` };
  }
  if (!source) {
    const low = count * Math.min(...perSecond) + shortest * rate.per_input_second;
    const high = count * Math.max(...perSecond) + longest * rate.per_input_second;
    return { low, high, what: `${seconds(count)} more` };
  }
  const billed = source.short <= entry.small_input_side ? "480p" : "720p";
  if (source.seconds < shortest || source.seconds > longest) {
    return { note: `input of ${seconds(source.seconds)}: fal extends ${shortest}–${longest} s` };
  }
  const price = count * rate.per_second[billed] + source.seconds * rate.per_input_second;
  return { low: price, high: price, what: `${seconds(count)} more at ${billed}` };
}

/**
 *   "$0.42 · 6 s at 720p"   "$0.352 · 5 s at 720p + image"   "$1.26 · 3 prompts × 6 s at 720p"
 *   "$0.406–0.414 · 8 s at 480p" (references: how many of 'image' is known only at run time)
 *   "$0.06/s of input · at most $0.48" (an edit of a video of unknown length)
 *   "$0.32–0.57 · 6 s more" (an extension of a video of unknown length and size)
 *   "1080p: not with grok-imagine-video"
 */
function videoLabel(entry, state) {
  const quote = videoQuote(entry, state);
  if (quote.note) return quote.note;
  if (quote.rate) return quote.tail ? `${quote.rate} · ${quote.tail}` : quote.rate;
  const runs = Math.max(1, state.runs ?? 1);
  const price = formatUsdRange(round6(quote.low * runs), round6(quote.high * runs));
  return `${price} · ${runs > 1 ? `${plural(runs, "prompt")} × ` : ""}${quote.what}`;
}

export const PROMPT_LIST_NODE = "FalGrokImaginePromptList";

// Python's str.splitlines() breaks, and a character its str.strip() keeps (not Python whitespace).
const LINE_BREAK = /\r\n|[\n\v\f\r\x1c-\x1e\x85\u2028\u2029]/;
const PROMPT_CHARACTER = /[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;

/** How many prompts a prompt list's text holds: its non-blank lines, as the Python node splits them. */
export function promptCount(text) {
  return String(text ?? "")
    .split(LINE_BREAK)
    .filter((line) => PROMPT_CHARACTER.test(line)).length;
}

// Each Prompt List widget's last text and its count: the canvas asks on every frame, and the text of a
// long list is counted again only when it changes.
const countedLists = new WeakMap();

function listedPrompts(widget) {
  const text = widget?.value;
  const counted = countedLists.get(widget);
  if (counted?.text === text) return counted.count;
  const count = promptCount(text);
  if (widget) countedLists.set(widget, { text, count });
  return count;
}

function inputConnected(node, index) {
  if (typeof node.isInputConnected === "function") return node.isInputConnected(index);
  return node.inputs?.[index]?.link != null;
}

/**
 * What of a litegraph node the price depends on: its widget values, which inputs are linked, whether
 * num_images (a video's duration) comes from a link, how often it runs when its prompt is a Grok Imagine Prompt
 * List, and for a video node's input video what a Grok video node feeding it will make (`videoSource`; `entryFor`
 * gives the pricing entry of a node type).
 */
export function nodePriceState(node, entry, entryFor) {
  const values = widgetValues(node);
  const countInput = entry?.count_input ?? "num_images";
  const state = { values, connected: [], countLinked: false, runs: 1 };
  const range = widgetRange(node, countInput);
  if (range) state.countRange = range;
  if (entry?.video_input) state.source = videoSource(originOf(node, entry.video_input), entryFor);
  (node.inputs ?? []).forEach((input, index) => {
    if (!input || !inputConnected(node, index)) return;
    const name = input.widget?.name ?? input.name;
    state.connected.push(name);
    if (name === countInput) state.countLinked = true;
    if (name === "prompt") {
      const origin = node.getInputNode?.(index);
      if (origin?.type === PROMPT_LIST_NODE || origin?.comfyClass === PROMPT_LIST_NODE) {
        const listInput = origin.inputs?.findIndex((i) => (i.widget?.name ?? i.name) === "prompts") ?? -1;
        const listLinked = listInput >= 0 && inputConnected(origin, listInput);
        const count = listedPrompts(origin.widgets?.find((w) => w.name === "prompts"));
        if (!listLinked && count > 0) state.runs = count;
      }
    }
  });
  return state;
}

// ---------------------------------------------------------------------------------------------
// The price badge

export const BADGE_COLORS = Object.freeze({ fg: "#ffffff", bg: "#1e6b41" });

/**
 * The badge in `node.badges`. Both renderers of frontend 1.5x read node.badges: the canvas calls
 * `badge()` for a function entry and draws what it returns (`getWidth`, `draw`, `height`); Nodes 2.0
 * reads `text`, `fgColor` and `bgColor` of the same object into its badge row. Methods and getters
 * live on the prototype, so Nodes 2.0 passes only those three on to its element.
 */
export class PriceBadge {
  constructor(text = "") {
    this.text = text;
    this.fgColor = BADGE_COLORS.fg;
    this.bgColor = BADGE_COLORS.bg;
  }

  get height() {
    return 20;
  }

  get fontSize() {
    return 12;
  }

  get padding() {
    return 6;
  }

  get visible() {
    return this.text.length > 0;
  }

  getWidth(ctx) {
    if (!this.visible) return 0;
    const font = ctx.font;
    ctx.font = `${this.fontSize}px sans-serif`;
    const width = ctx.measureText(this.text).width;
    ctx.font = font;
    return width + this.padding * 2;
  }

  draw(ctx, x, y) {
    if (!this.visible) return;
    const width = this.getWidth(ctx);
    ctx.save();
    ctx.font = `${this.fontSize}px sans-serif`;
    ctx.fillStyle = this.bgColor;
    ctx.beginPath();
    if (ctx.roundRect) ctx.roundRect(x, y, width, this.height, 5);
    else ctx.rect(x, y, width, this.height);
    ctx.fill();
    ctx.fillStyle = this.fgColor;
    ctx.textBaseline = "middle";
    ctx.textAlign = "left";
    ctx.fillText(this.text, x + this.padding, y + this.height / 2 + 1);
    ctx.restore();
  }
}

/**
 * `value` made observable by the frontend's own Vue, when `store` is one of its reactive stores
 * (`app.extensionManager` is): Nodes 2.0 computes a node's badge row once and again only when
 * something reactive it read changes, so the badge's text must be reactive for the label to follow
 * the widgets. The store only lends its reactivity for a moment; nothing stays in it. Anywhere else
 * (the classic canvas redraws anyway, or an older frontend) `value` itself is returned.
 */
export function reactiveOf(value, store) {
  if (!store || !store.__v_isReactive) return value;
  const slot = "__grokImagineReactiveSlot";
  try {
    store[slot] = value;
    const proxy = store[slot];
    return proxy && typeof proxy === "object" ? proxy : value;
  } catch {
    return value;
  } finally {
    try {
      delete store[slot];
    } catch {
      /* a store that refuses deletes keeps one harmless slot */
    }
  }
}

export const PRICE_BADGE_MARK = "grokImaginePrice";

/**
 * Put the price badge on a node: into `node.badges` where the frontend has it (both renderers of
 * 1.5x, and 1.27's canvas), else nothing (the caller draws `badge` itself). Never twice. `entryFor(type)`:
 * the pricing entry of another node type (a video node's price follows the Grok video node feeding it).
 * Returns `{badge, usesBadges, refresh}`; `refresh()` recomputes the label and answers whether it changed.
 */
export function attachPriceBadge(node, getEntry, store, entryFor) {
  const existing = node.badges?.find?.((b) => typeof b === "function" && b[PRICE_BADGE_MARK]);
  if (existing) return existing[PRICE_BADGE_MARK];
  const badge = reactiveOf(new PriceBadge(), store);
  const usesBadges = Array.isArray(node.badges);
  const refresh = () => {
    const entry = getEntry();
    const label = entry ? priceLabel(entry, nodePriceState(node, entry, entryFor)) ?? "" : "";
    if (badge.text === label) return false;
    badge.text = label;
    return true;
  };
  const handle = { badge, usesBadges, refresh };
  if (usesBadges) {
    const entry = () => badge;
    entry[PRICE_BADGE_MARK] = handle;
    node.badges.push(entry);
  }
  refresh();
  return handle;
}
