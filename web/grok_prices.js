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
 */
export function priceLabel(entry, state = {}) {
  if (!entry) return null;
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
 * num_images comes from a link, and how often it runs when its prompt is a Grok Imagine Prompt List.
 */
export function nodePriceState(node, entry) {
  const values = {};
  for (const widget of node.widgets ?? []) values[widget.name] = widget.value;
  const countInput = entry?.count_input ?? "num_images";
  const state = { values, connected: [], countLinked: false, runs: 1 };
  const range = node.widgets?.find((w) => w.name === countInput)?.options;
  if (typeof range?.min === "number" && typeof range?.max === "number") state.countRange = [range.min, range.max];
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
 * 1.5x, and 1.27's canvas), else nothing (the caller draws `badge` itself). Never twice.
 * Returns `{badge, usesBadges, refresh}`; `refresh()` recomputes the label and answers whether it changed.
 */
export function attachPriceBadge(node, getEntry, store) {
  const existing = node.badges?.find?.((b) => typeof b === "function" && b[PRICE_BADGE_MARK]);
  if (existing) return existing[PRICE_BADGE_MARK];
  const badge = reactiveOf(new PriceBadge(), store);
  const usesBadges = Array.isArray(node.badges);
  const refresh = () => {
    const entry = getEntry();
    const label = entry ? priceLabel(entry, nodePriceState(node, entry)) ?? "" : "";
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
