import { describe, expect, it, vi } from "vitest";
import {
  PRICE_BADGE_MARK,
  PROMPT_KEPT_MAX,
  PROMPT_KEPT_MIN,
  PriceBadge,
  REVISED_PROMPT_HEIGHT,
  REVISED_PROMPT_WIDGET,
  ROUTES,
  WRITE_HEADERS,
  attachPriceBadge,
  buildKeyPanel,
  buildSpendPanel,
  describeBalance,
  describeFloor,
  describeKeyStatus,
  describeLimit,
  describeTotals,
  formatBalance,
  formatUsd,
  formatUsdRange,
  formatWhen,
  keepPromptReadable,
  nodePriceState,
  parseLimit,
  priceLabel,
  reactiveOf,
  recentRows,
  refreshSpendPanels,
  referenceRange,
  requestInit,
  requestCount,
  revisedPromptOf,
  runPriceRange,
  shortEndpoint,
  showRevisedPrompt,
} from "../../web/grok_imagine_core.js";
import PRICING from "./fixtures/pricing.json";

// What GET /grok_imagine/pricing serves (nodes/prices.py); tests/e2e/test_frontend.py checks it still is.
const entry = (node) => PRICING.nodes[node];
const label = (node, values, connected = []) => priceLabel(entry(node), { values, connected });

describe("the calls to the pack's routes", () => {
  it("sends writes as JSON with the pack's header, and a body even for DELETE", () => {
    expect(requestInit("GET")).toEqual({ method: "GET" });
    expect(requestInit("POST", { key: "k" })).toEqual({
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Grok-Imagine": "1" },
      body: '{"key":"k"}',
    });
    expect(requestInit("DELETE")).toEqual({ method: "DELETE", headers: { ...WRITE_HEADERS }, body: "{}" });
    expect(requestInit("post", { daily_limit_usd: null }).body).toBe('{"daily_limit_usd":null}');
  });
});

describe("money", () => {
  it("shows cents, and tenths of a cent where a price has them", () => {
    expect(formatUsd(0.02)).toBe("$0.02");
    expect(formatUsd(0.2)).toBe("$0.20");
    expect(formatUsd(0.062)).toBe("$0.062");
    expect(formatUsd(0.005)).toBe("$0.005");
    expect(formatUsd(0.32)).toBe("$0.32");
    expect(formatUsd(12.5)).toBe("$12.50");
    expect(formatUsd(0.1 + 0.2)).toBe("$0.30");
    expect(formatUsd(0)).toBe("$0.00");
  });
  it("writes a range with one dollar sign", () => {
    expect(formatUsdRange(0.062, 0.066)).toBe("$0.062–0.066");
    expect(formatUsdRange(0.08, 0.08)).toBe("$0.08");
  });
});

describe("the price label on the node, from the served price table", () => {
  it("splits a node's images into requests of at most four", () => {
    expect(requestCount(1)).toBe(1);
    expect(requestCount(4)).toBe(1);
    expect(requestCount(10)).toBe(3);
    expect(requestCount(16)).toBe(4);
  });

  it("Grok Imagine Image: tier and resolution, every image billed, requests above four", () => {
    expect(label("FalGrokImagineImage", { num_images: 1 })).toBe("$0.02 · 1 image");
    expect(label("FalGrokImagineImage", { num_images: 4, tier: "standard", resolution: "2k" })).toBe("$0.08 · 4 images");
    expect(label("FalGrokImagineImage", { num_images: 10, resolution: "2k" })).toBe("$0.20 · 10 images · 3 requests");
    expect(label("FalGrokImagineImage", { num_images: 1, tier: "quality", resolution: "1k" })).toBe("$0.05 · 1 image");
    expect(label("FalGrokImagineImage", { num_images: 4, tier: "quality", resolution: "2k" })).toBe("$0.28 · 4 images");
    expect(label("FalGrokImagineImage", { num_images: 16, tier: "quality", resolution: "2k" })).toBe(
      "$1.12 · 16 images · 4 requests",
    );
  });

  it("Grok Imagine Edit: the references make a range until both extra inputs are connected", () => {
    expect(label("FalGrokImagineEdit", { num_images: 1 })).toBe("$0.022–0.026 · 1 image");
    expect(label("FalGrokImagineEdit", { num_images: 3 })).toBe("$0.062–0.066 · 3 images");
    expect(label("FalGrokImagineEdit", { num_images: 2 }, ["image", "image_2"])).toBe("$0.044–0.046 · 2 images");
    expect(label("FalGrokImagineEdit", { num_images: 2 }, ["image", "image_2", "image_3"])).toBe("$0.046 · 2 images");
    expect(label("FalGrokImagineEdit", { num_images: 5, tier: "quality", resolution: "2k" })).toBe(
      "$0.37–0.41 · 5 images · 2 requests",
    );
    expect(label("FalGrokImagineEdit", { num_images: 1, tier: "quality" }, ["image_2", "image_3"])).toBe(
      "$0.08 · 1 image",
    );
  });

  it("Grok Imagine 2.0 Image: quality medium (the default) or low, at 1k or 2k", () => {
    expect(label("FalGrokImagine2Image", { num_images: 1 })).toBe("$0.06 · 1 image");
    expect(label("FalGrokImagine2Image", { num_images: 2, quality: "medium", resolution: "2k" })).toBe(
      "$0.16 · 2 images",
    );
    expect(label("FalGrokImagine2Image", { num_images: 4, quality: "low" })).toBe("$0.16 · 4 images");
    expect(label("FalGrokImagine2Image", { num_images: 9, quality: "low", resolution: "2k" })).toBe(
      "$0.54 · 9 images · 3 requests",
    );
  });

  it("Grok Imagine 2.0 Edit: quality, resolution, images and references", () => {
    expect(label("FalGrokImagine2Edit", { num_images: 1 })).toBe("$0.07–0.09 · 1 image");
    expect(label("FalGrokImagine2Edit", { num_images: 2, quality: "low", resolution: "2k" }, ["image_3"])).toBe(
      "$0.14–0.15 · 2 images",
    );
    expect(
      label("FalGrokImagine2Edit", { num_images: 8, quality: "medium", resolution: "2k" }, ["image_2", "image_3"]),
    ).toBe("$0.70 · 8 images · 2 requests");
    expect(label("FalGrokImagine2Edit", { num_images: 16, quality: "low" })).toBe(
      "$0.68–0.76 · 16 images · 4 requests",
    );
  });

  it("counts references as fal does: 1 to 3 from `image`, one more per connected extra, 3 at most", () => {
    expect(referenceRange(entry("FalGrokImagineEdit"), [])).toEqual([1, 3]);
    expect(referenceRange(entry("FalGrokImagineEdit"), ["image"])).toEqual([1, 3]);
    expect(referenceRange(entry("FalGrokImagineEdit"), ["image_3"])).toEqual([2, 3]);
    expect(referenceRange(entry("FalGrokImagineEdit"), ["image_2", "image_3"])).toEqual([3, 3]);
    expect(referenceRange(entry("FalGrokImagineImage"), ["image_2"])).toEqual([0, 0]);
  });

  it("multiplies by the prompts of a prompt list feeding the node", () => {
    expect(priceLabel(entry("FalGrokImagineImage"), { values: { num_images: 2 }, runs: 3 })).toBe(
      "$0.12 · 3 prompts × 2 images",
    );
    expect(priceLabel(entry("FalGrokImagineImage"), { values: { num_images: 6 }, runs: 2 })).toBe(
      "$0.24 · 2 prompts × 6 images · 2 requests each",
    );
    expect(runPriceRange(entry("FalGrokImagine2Edit"), { values: { num_images: 1 }, runs: 2 })).toEqual([0.14, 0.18]);
  });

  it("gives the price per image when num_images comes from a link", () => {
    expect(priceLabel(entry("FalGrokImagineImage"), { values: { num_images: 3 }, countLinked: true })).toBe(
      "$0.02/image",
    );
    expect(priceLabel(entry("FalGrokImagine2Edit"), { values: { quality: "low" }, countLinked: true })).toBe(
      "$0.04/image + references",
    );
  });

  it("treats a workflow saved before the choice input existed as its default, and bad counts as 1", () => {
    expect(label("FalGrokImagineImage", { num_images: 2, tier: undefined })).toBe("$0.04 · 2 images");
    expect(label("FalGrokImagine2Image", { quality: "ultra" })).toBe("$0.06 · 1 image");
    expect(label("FalGrokImagineImage", { num_images: "x" })).toBe("$0.02 · 1 image");
  });

  it("says so when a price is unknown, and shows nothing for nodes this pack does not bill", () => {
    const unknown = { ...entry("FalGrokImagineImage"), choices: { standard: { endpoint: "e", per_image: {} } } };
    expect(priceLabel(unknown, { values: { num_images: 2 } })).toBe("2 images · price unknown");
    expect(priceLabel(undefined, {})).toBeNull();
  });
});

/** A litegraph-like node: widgets, inputs with links, the input's origin node. */
function fakeNode(type, values, inputs = [], origins = {}) {
  return {
    type,
    comfyClass: type,
    widgets: Object.entries(values).map(([name, value]) => ({ name, value })),
    inputs: inputs.map(([name, link, widget]) => ({ name, link, ...(widget ? { widget: { name: widget } } : {}) })),
    badges: [],
    isInputConnected(i) {
      return this.inputs[i]?.link != null;
    },
    getInputNode(i) {
      return origins[this.inputs[i]?.name] ?? null;
    },
  };
}

describe("what of a node the price follows", () => {
  it("reads widget values and linked inputs", () => {
    const node = fakeNode("FalGrokImagineEdit", { num_images: 2, tier: "quality" }, [
      ["image", 1],
      ["image_2", null],
      ["image_3", 7],
    ]);
    const state = nodePriceState(node, entry("FalGrokImagineEdit"));
    expect(state.values).toMatchObject({ num_images: 2, tier: "quality" });
    expect(state.connected).toEqual(["image", "image_3"]);
    expect(state.countLinked).toBe(false);
    expect(priceLabel(entry("FalGrokImagineEdit"), state)).toBe("$0.12–0.13 · 2 images");
  });

  it("notices num_images fed by a link, and a prompt list's prompts", () => {
    const list = {
      type: "FalGrokImaginePromptList",
      widgets: [{ name: "prompts", value: "a fox\n\n  a bear \nan owl\n" }],
      inputs: [{ name: "prompts", link: null, widget: { name: "prompts" } }],
    };
    const node = fakeNode(
      "FalGrokImagineImage",
      { num_images: 1 },
      [
        ["prompt", 3, "prompt"],
        ["num_images", 4, "num_images"],
      ],
      { prompt: list },
    );
    const state = nodePriceState(node, entry("FalGrokImagineImage"));
    expect(state.countLinked).toBe(true);
    expect(state.runs).toBe(3);
  });
});

describe("the price badge", () => {
  const ctx = () => ({
    font: "10px serif",
    measureText: (text) => ({ width: text.length * 6 }),
    save: vi.fn(),
    restore: vi.fn(),
    beginPath: vi.fn(),
    roundRect: vi.fn(),
    fill: vi.fn(),
    fillText: vi.fn(),
  });

  it("draws like the frontend's own badges and hands Nodes 2.0 only text and colours", () => {
    const badge = new PriceBadge("$0.08 · 4 images");
    const c = ctx();
    expect(badge.getWidth(c)).toBe(16 * 6 + 12);
    expect(c.font).toBe("10px serif");
    badge.draw(c, 10, -50);
    expect(c.roundRect).toHaveBeenCalledWith(10, -50, 108, 20, 5);
    expect(c.fillText).toHaveBeenCalledWith("$0.08 · 4 images", 16, -39);
    expect(Object.keys(badge)).toEqual(["text", "fgColor", "bgColor"]);
    expect(new PriceBadge("").getWidth(c)).toBe(0);
  });

  it("goes into node.badges once, as a function the canvas calls, and follows the node", () => {
    const node = fakeNode("FalGrokImagineImage", { num_images: 1, tier: "standard" });
    const handle = attachPriceBadge(node, () => entry("FalGrokImagineImage"));
    expect(attachPriceBadge(node, () => entry("FalGrokImagineImage"))).toBe(handle);
    expect(node.badges).toHaveLength(1);
    expect(typeof node.badges[0]).toBe("function");
    expect(node.badges[0][PRICE_BADGE_MARK]).toBe(handle);
    expect(node.badges[0]().text).toBe("$0.02 · 1 image");
    expect(handle.refresh()).toBe(false);
    node.widgets[0].value = 4;
    expect(handle.refresh()).toBe(true);
    expect(node.badges[0]().text).toBe("$0.08 · 4 images");
    node.widgets[1].value = "quality";
    handle.refresh();
    expect(node.badges[0]().text).toBe("$0.20 · 4 images");
  });

  it("follows the references of an edit node as links come and go", () => {
    const node = fakeNode("FalGrokImagine2Edit", { num_images: 1 }, [
      ["image", 1],
      ["image_2", null],
      ["image_3", null],
    ]);
    const handle = attachPriceBadge(node, () => entry("FalGrokImagine2Edit"));
    expect(handle.badge.text).toBe("$0.07–0.09 · 1 image");
    node.inputs[1].link = 5;
    node.inputs[2].link = 6;
    handle.refresh();
    expect(handle.badge.text).toBe("$0.09 · 1 image");
  });

  it("is left to the caller to draw on a frontend without node.badges (never two badges)", () => {
    const node = fakeNode("FalGrokImagineImage", { num_images: 2 });
    delete node.badges;
    const handle = attachPriceBadge(node, () => entry("FalGrokImagineImage"));
    expect(handle.usesBadges).toBe(false);
    expect(handle.badge.text).toBe("$0.04 · 2 images");
    expect(node.badges).toBeUndefined();
  });

  it("is empty for a node without a price", () => {
    const node = fakeNode("FalGrokImagineResult", {});
    expect(attachPriceBadge(node, () => undefined).badge.text).toBe("");
  });

  it("borrows the frontend's reactivity for its text and leaves nothing in the store", () => {
    const sets = [];
    const target = {};
    const store = new Proxy(target, {
      get(t, key) {
        if (key === "__v_isReactive") return true;
        const value = t[key];
        return value && typeof value === "object" ? new Proxy(value, { set: (v, k, x) => (sets.push(k), (v[k] = x), true) }) : value;
      },
    });
    const badge = new PriceBadge("a");
    const reactive = reactiveOf(badge, store);
    expect(reactive).not.toBe(badge);
    reactive.text = "b";
    expect(sets).toEqual(["text"]);
    expect(badge.text).toBe("b");
    expect(Object.keys(target)).toEqual([]);
    expect(reactiveOf(badge, {})).toBe(badge);
    expect(reactiveOf(badge, undefined)).toBe(badge);
  });
});

describe("the fal key setting", () => {
  it("never shows more than the last four characters", () => {
    const text = describeKeyStatus({ configured: true, source: "environment variable FAL_KEY", last4: "cdef" });
    expect(text).toContain("…cdef");
    expect(text).toContain("FAL_KEY");
  });
  it("tells the user how to configure a key when none is set", () => {
    expect(describeKeyStatus({ configured: false })).toMatch(/FAL_KEY/);
  });
  it("says the environment wins over a stored key", () => {
    const text = describeKeyStatus({ configured: true, source: "env", last4: "abcd", environment_wins: true });
    expect(text).toMatch(/environment variable wins/);
  });
  it("says why a configured key cannot be used", () => {
    const problem = "The fal key from the environment variable FAL_KEY is not usable: it holds a space or a tab.";
    expect(describeKeyStatus({ configured: false, problem })).toBe(problem);
    expect(describeKeyStatus({ configured: true, source: "the key file", last4: "abcd", problem: "It expired." })).toBe(
      "A fal key (…abcd) is configured from the key file. It cannot be used: It expired.",
    );
  });

  it("sends a pasted key once to the server and keeps it nowhere in the page", async () => {
    const calls = [];
    const request = vi.fn(async (method, path, body) => {
      calls.push({ method, path, body });
      return { ok: true, json: { configured: true, source: "key file", last4: "wxyz", key_file_present: true } };
    });
    const panel = buildKeyPanel(document, request);
    document.body.append(panel);
    await vi.waitFor(() => expect(calls.length).toBe(1));
    const input = panel.querySelector("input");
    expect(input.type).toBe("password");
    input.value = "secret-id:secret-value-wxyz";
    panel.querySelector("button.grok-imagine-save-key").click();
    await vi.waitFor(() => expect(calls.length).toBe(2));
    expect(calls[1]).toEqual({ method: "POST", path: ROUTES.key, body: { key: "secret-id:secret-value-wxyz" } });
    expect(input.value).toBe("");
    expect(document.body.innerHTML).not.toContain("secret-value");
    await vi.waitFor(() => expect(panel.textContent).toContain("…wxyz"));
    panel.remove();
  });

  it("removes the stored key with a JSON body, as the server's guard asks", async () => {
    const calls = [];
    const request = vi.fn(async (method, path, body) => {
      calls.push({ method, path, body });
      return { ok: true, json: { configured: false, key_file_present: method !== "DELETE" } };
    });
    const panel = buildKeyPanel(document, request);
    await vi.waitFor(() => expect(panel.querySelector("button.grok-imagine-remove-key").disabled).toBe(false));
    panel.querySelector("button.grok-imagine-remove-key").click();
    await vi.waitFor(() => expect(calls.length).toBe(2));
    expect(calls[1]).toEqual({ method: "DELETE", path: ROUTES.key, body: {} });
    await vi.waitFor(() => expect(panel.querySelector("button.grok-imagine-remove-key").disabled).toBe(true));
  });

  it("shows the server's error when a key is refused, and the problem of an unusable key", async () => {
    const request = vi.fn(async (method) =>
      method === "POST"
        ? { ok: false, json: { error: "That does not look like a fal key (one line, no spaces)." } }
        : { ok: true, json: { configured: false, problem: "The pack's key file cannot be read." } },
    );
    const panel = buildKeyPanel(document, request);
    await vi.waitFor(() => expect(panel.textContent).toContain("The pack's key file cannot be read."));
    expect(panel.querySelector(".grok-imagine-key-status").style.color).not.toBe("");
    panel.querySelector("input").value = "bad key";
    panel.querySelector("button").click();
    await vi.waitFor(() => expect(panel.textContent).toContain("does not look like a fal key"));
  });
});

describe("the spend panel", () => {
  const NOW = new Date(2026, 11, 14, 15, 30).getTime();
  const at = (y, m, d, h, min) => new Date(y, m, d, h, min).getTime() / 1000;
  const SPEND = {
    today_usd: 0.146,
    month_usd: 3.2,
    session_usd: 0.08,
    daily_limit_usd: 5,
    limit_source: "Settings > Grok Imagine (fal)",
    recent: [
      { request_id: "r-6", endpoint: "xai/grok-imagine-image/v2.0/edit", images: 2, references: 2, price_usd: 0.14, at: at(2026, 11, 14, 15, 2) },
      { request_id: "r-5", endpoint: "xai/grok-imagine-image", images: 4, references: 0, price_usd: 0.08, at: at(2026, 11, 14, 9, 41) },
      { request_id: "r-4", endpoint: "xai/grok-imagine-image/quality/text-to-image", images: 1, references: 0, price_usd: null, at: at(2026, 11, 13, 22, 5) },
      { request_id: "r-3", endpoint: "xai/grok-imagine-image", images: 1, references: 0, price_usd: 0.02, at: at(2026, 11, 12, 8, 0) },
      { request_id: "r-2", endpoint: "xai/grok-imagine-image", images: 1, references: 0, price_usd: 0.02, at: at(2026, 11, 12, 8, 0) },
      { request_id: "r-1", endpoint: "xai/grok-imagine-image", images: 1, references: 0, price_usd: 0.02, at: at(2026, 11, 11, 8, 0) },
    ],
  };

  it("sums up today, this month and this session", () => {
    expect(describeTotals(SPEND)).toBe("Today $0.146 · this month $3.20 · this session $0.08");
  });

  it("says where the daily limit comes from, and that the environment variable wins", () => {
    expect(describeLimit(SPEND)).toBe(
      "Daily limit $5.00, set here (Settings > Grok Imagine (fal)). $4.854 left today.",
    );
    const env = { ...SPEND, limit_source: "the environment variable GROK_IMAGINE_DAILY_LIMIT_USD", today_usd: 7 };
    expect(describeLimit(env)).toBe(
      "Daily limit $5.00, set by the environment variable GROK_IMAGINE_DAILY_LIMIT_USD: it wins over a limit set " +
        "here (unset it to use this one). $0.00 left today.",
    );
    expect(describeLimit({ ...SPEND, daily_limit_usd: null, limit_source: null })).toBe("No daily limit is set.");
  });

  it("lists the last requests: time, endpoint, images, price", () => {
    expect(formatWhen(at(2026, 11, 14, 9, 5), NOW)).toBe("09:05");
    expect(formatWhen(at(2026, 11, 13, 22, 5), NOW)).toBe("2026-12-13 22:05");
    expect(shortEndpoint("xai/grok-imagine-image")).toBe("text-to-image");
    expect(shortEndpoint("xai/grok-imagine-image/quality/edit")).toBe("quality/edit");
    expect(recentRows(SPEND, NOW)).toHaveLength(6);
    const rows = recentRows(SPEND, NOW, 5);
    expect(rows).toHaveLength(5);
    expect(rows[0]).toEqual({ when: "15:02", endpoint: "v2.0/edit", images: "2 images + 2 refs", price: "$0.14", requestId: "r-6" });
    expect(rows[2]).toMatchObject({ endpoint: "quality/text-to-image", images: "1 image", price: "unknown" });
  });

  it("reads a typed limit in dollars", () => {
    expect(parseLimit("5")).toEqual({ value: 5 });
    expect(parseLimit(" $12,50 ")).toEqual({ value: 12.5 });
    expect(parseLimit("0")).toEqual({ value: 0 });
    expect(parseLimit("").error).toMatch(/Type a limit/);
    expect(parseLimit("-1").error).toMatch(/not an amount/);
    expect(parseLimit("five").error).toMatch(/not an amount/);
  });

  function spendServer(initial) {
    let spend = structuredClone(initial);
    const calls = [];
    const request = vi.fn(async (method, path, body) => {
      calls.push({ method, path, body });
      if (method === "POST") {
        spend = { ...spend, daily_limit_usd: body.daily_limit_usd, limit_source: body.daily_limit_usd === null ? null : "Settings > Grok Imagine (fal)" };
      }
      return { ok: true, json: spend };
    });
    return { request, calls };
  }

  it("shows the spend, the limit and the last requests as the server reports them", async () => {
    const { request, calls } = spendServer(SPEND);
    const panel = buildSpendPanel(document, request, { now: () => NOW });
    await vi.waitFor(() => expect(panel.textContent).toContain("Today $0.146"));
    expect(calls[0]).toEqual({ method: "GET", path: ROUTES.spend, body: undefined });
    expect(panel.textContent).toContain("Daily limit $5.00, set here");
    const cells = [...panel.querySelectorAll("tr")].map((tr) => [...tr.children].map((c) => c.textContent));
    expect(cells[0]).toEqual(["time", "endpoint", "images", "price"]);
    expect(cells[1]).toEqual(["15:02", "v2.0/edit", "2 images + 2 refs", "$0.14"]);
    expect(cells).toHaveLength(7);
  });

  it("sets and clears the daily limit through POST /grok_imagine/spend/limit", async () => {
    const { request, calls } = spendServer({ ...SPEND, daily_limit_usd: null, limit_source: null, recent: [] });
    const panel = buildSpendPanel(document, request, { now: () => NOW });
    await vi.waitFor(() => expect(panel.textContent).toContain("No daily limit is set."));
    expect(panel.textContent).toContain("No requests recorded yet.");
    expect(panel.querySelector("button.grok-imagine-clear-limit").disabled).toBe(true);
    const input = panel.querySelector("input");
    input.value = "2.5";
    panel.querySelector("button.grok-imagine-set-limit").click();
    await vi.waitFor(() => expect(panel.textContent).toContain("Daily limit $2.50, set here"));
    expect(calls[1]).toEqual({ method: "POST", path: ROUTES.spendLimit, body: { daily_limit_usd: 2.5 } });
    expect(input.value).toBe("");
    expect(panel.querySelector("button.grok-imagine-clear-limit").disabled).toBe(false);
    panel.querySelector("button.grok-imagine-clear-limit").click();
    await vi.waitFor(() => expect(panel.textContent).toContain("No daily limit is set."));
    expect(calls[2]).toEqual({ method: "POST", path: ROUTES.spendLimit, body: { daily_limit_usd: null } });
    panel.querySelector("button.grok-imagine-refresh-spend").click();
    await vi.waitFor(() => expect(calls[3]).toMatchObject({ method: "GET", path: ROUTES.spend }));
  });

  it("says that a limit set here waits while the environment variable's limit applies", async () => {
    const env = { ...SPEND, limit_source: "the environment variable GROK_IMAGINE_DAILY_LIMIT_USD" };
    const request = vi.fn(async () => ({ ok: true, json: env }));
    const panel = buildSpendPanel(document, request, { now: () => NOW });
    await vi.waitFor(() => expect(panel.textContent).toContain("it wins over a limit set here"));
    panel.querySelector("input").value = "3";
    panel.querySelector("button.grok-imagine-set-limit").click();
    await vi.waitFor(() =>
      expect(panel.textContent).toContain("Stored $3.00 as the limit set here; the environment variable's limit applies"),
    );
    expect(request).toHaveBeenLastCalledWith("POST", ROUTES.spendLimit, { daily_limit_usd: 3 });
  });

  it("refuses a limit that is no amount without asking the server, and shows the server's errors", async () => {
    const request = vi.fn(async (method) =>
      method === "POST"
        ? { ok: false, json: { error: "daily_limit_usd must be a number of US dollars (0 or more), or null to clear it." } }
        : { ok: true, json: SPEND },
    );
    const panel = buildSpendPanel(document, request, { now: () => NOW });
    await vi.waitFor(() => expect(request).toHaveBeenCalledTimes(1));
    panel.querySelector("input").value = "lots";
    panel.querySelector("button.grok-imagine-set-limit").click();
    expect(panel.textContent).toContain('"lots" is not an amount');
    expect(request).toHaveBeenCalledTimes(1);
    panel.querySelector("button.grok-imagine-clear-limit").click();
    await vi.waitFor(() => expect(panel.textContent).toContain("daily_limit_usd must be a number"));
  });
});

describe("the fal balance and the balance floor in the spend panel", () => {
  const NOW = new Date(2026, 11, 14, 15, 30).getTime();
  const READ_AT = new Date(2026, 11, 14, 15, 29).getTime() / 1000;
  const SPEND = {
    today_usd: 0.04,
    month_usd: 0.04,
    session_usd: 0.04,
    daily_limit_usd: null,
    limit_source: null,
    balance_floor_usd: null,
    floor_source: null,
    recent: [],
    fal_balance_usd: 12.5,
    fal_balance_read_at: READ_AT,
    fal_balance_status: "known",
    fal_balance_error: null,
  };

  it("shows the balance and when it was read, and how far above the floor it is", () => {
    expect(describeBalance(SPEND, NOW)).toEqual({ text: "fal balance $12.50 (read at 15:29).", problem: false, title: "" });
    expect(describeBalance({ ...SPEND, balance_floor_usd: 2 }, NOW).text).toBe(
      "fal balance $12.50 (read at 15:29). $10.50 above the floor.",
    );
    expect(formatBalance(-0.18)).toBe("-$0.18");
    expect(describeBalance({ ...SPEND, fal_balance_usd: -0.18 }, NOW).text).toBe("fal balance -$0.18 (read at 15:29).");
  });

  it("shows nothing without a key, says so when fal refuses the key, and 'unavailable' when the read failed", () => {
    expect(describeBalance({ ...SPEND, fal_balance_status: "no_key", fal_balance_usd: null }, NOW)).toBeNull();
    const refused = "fal rejected the API key (HTTP 401) during reading the fal balance. The key is wrong.";
    expect(describeBalance({ ...SPEND, fal_balance_status: "key_refused", fal_balance_error: refused }, NOW)).toEqual({
      text: `fal refused this key when asked for the balance. ${refused}`,
      problem: true,
      title: refused,
    });
    const failed = { ...SPEND, fal_balance_status: "unavailable", fal_balance_usd: null, fal_balance_error: "no answer" };
    expect(describeBalance(failed, NOW)).toEqual({
      text: "fal balance unavailable: runs are not held back (fal decides).",
      problem: true,
      title: "no answer",
    });
    expect(describeBalance({ today_usd: 1 }, NOW)).toBeUndefined(); // a POST's answer: what is shown stays
  });

  it("says where the floor comes from, and that the environment variable wins", () => {
    expect(describeFloor(SPEND)).toBe("No balance floor is set: runs may spend the whole fal balance.");
    expect(describeFloor({ ...SPEND, balance_floor_usd: 2, floor_source: "Settings > Grok Imagine (fal)" })).toBe(
      "Balance floor $2.00, set here (Settings > Grok Imagine (fal)): a run that would take the fal balance below " +
        "it is refused before anything is sent.",
    );
    const env = { balance_floor_usd: 1, floor_source: "the environment variable GROK_IMAGINE_BALANCE_FLOOR_USD" };
    expect(describeFloor(env)).toMatch(/^Balance floor \$1\.00, set by the environment variable .*: it wins over a floor/);
    expect(parseLimit("", "floor").error).toMatch(/Type a floor/);
  });

  function server(initial) {
    let spend = structuredClone(initial);
    const calls = [];
    const request = vi.fn(async (method, path, body) => {
      calls.push({ method, path, body });
      if (method === "POST" && path === ROUTES.spendFloor) {
        const value = body.balance_floor_usd;
        const { fal_balance_usd, fal_balance_read_at, fal_balance_status, fal_balance_error, ...stored } = spend;
        spend = { ...spend, balance_floor_usd: value, floor_source: value === null ? null : "Settings > Grok Imagine (fal)" };
        return { ok: true, json: { ...stored, balance_floor_usd: value, floor_source: spend.floor_source } };
      }
      return { ok: true, json: spend };
    });
    return { request, calls, set: (changes) => Object.assign(spend, changes) };
  }

  it("shows the balance beside today's spend, and hides it without a key", async () => {
    const { request, set } = server(SPEND);
    const panel = buildSpendPanel(document, request, { now: () => NOW });
    const line = panel.querySelector(".grok-imagine-balance");
    await vi.waitFor(() => expect(line.textContent).toBe("fal balance $12.50 (read at 15:29)."));
    expect(line.hidden).toBe(false);
    expect(panel.querySelector(".grok-imagine-spend-totals").nextElementSibling).toBe(line);
    set({ fal_balance_status: "no_key", fal_balance_usd: null, fal_balance_read_at: null });
    panel.querySelector("button.grok-imagine-refresh-spend").click();
    await vi.waitFor(() => expect(line.hidden).toBe(true));
  });

  it("sets and clears the floor through POST /grok_imagine/spend/floor, keeping the balance shown", async () => {
    const { request, calls } = server(SPEND);
    const panel = buildSpendPanel(document, request, { now: () => NOW });
    await vi.waitFor(() => expect(panel.textContent).toContain("No balance floor is set"));
    expect(panel.querySelector("button.grok-imagine-clear-floor").disabled).toBe(true);
    const input = panel.querySelector("input[aria-label='balance floor in US dollars']");
    input.value = "lots";
    panel.querySelector("button.grok-imagine-set-floor").click();
    expect(panel.textContent).toContain('"lots" is not an amount');
    expect(calls).toHaveLength(1);
    input.value = "$2,5";
    panel.querySelector("button.grok-imagine-set-floor").click();
    await vi.waitFor(() => expect(panel.textContent).toContain("Balance floor $2.50, set here"));
    expect(calls[1]).toEqual({ method: "POST", path: ROUTES.spendFloor, body: { balance_floor_usd: 2.5 } });
    expect(panel.textContent).toContain("Balance floor set to $2.50.");
    expect(panel.querySelector(".grok-imagine-balance").textContent).toBe(
      "fal balance $12.50 (read at 15:29). $10.00 above the floor.",
    );
    expect(input.value).toBe("");
    panel.querySelector("button.grok-imagine-clear-floor").click();
    await vi.waitFor(() => expect(panel.textContent).toContain("The balance floor set here was cleared."));
    expect(calls[2]).toEqual({ method: "POST", path: ROUTES.spendFloor, body: { balance_floor_usd: null } });
  });

  it("asks again after each run, while the panel is open", async () => {
    const { request, calls, set } = server(SPEND);
    const open = buildSpendPanel(document, request, { now: () => NOW });
    document.body.append(open);
    const closed = buildSpendPanel(document, request, { now: () => NOW }); // never shown, or closed
    await vi.waitFor(() => expect(calls).toHaveLength(2));
    set({ fal_balance_usd: 12.46, today_usd: 0.08 });
    refreshSpendPanels();
    await vi.waitFor(() => expect(open.querySelector(".grok-imagine-balance").textContent).toContain("$12.46"));
    expect(calls).toHaveLength(3);
    expect(closed.querySelector(".grok-imagine-balance").textContent).toContain("$12.50");
    open.remove();
  });
});

describe("the node after a run", () => {
  function fakeNode(promptHeight) {
    const prompt = { name: "prompt", value: "x", element: document.createElement("textarea"), computedHeight: promptHeight };
    const node = { widgets: [prompt] };
    node.addDOMWidget = (name, type, element, options) => {
      const widget = { name, type, element, options };
      Object.defineProperty(widget, "value", { get: options.getValue, set: options.setValue });
      node.widgets.push(widget);
      return widget;
    };
    return node;
  }
  const keptMin = (node) => node.widgets[0].element.style.getPropertyValue("--comfy-widget-min-height");

  it("reads the revised prompt from the executed message", () => {
    expect(revisedPromptOf({ text: ["a fox at dawn"] })).toBe("a fox at dawn");
    expect(revisedPromptOf({ text: [""] })).toBeNull();
    expect(revisedPromptOf({ images: [] })).toBeNull();
  });

  it("shows it in one read-only box of a small fixed height that is never saved into the workflow", () => {
    const node = fakeNode(158);
    showRevisedPrompt(node, "first", document);
    const widget = showRevisedPrompt(node, "second", document);
    expect(node.widgets.filter((w) => w.name === REVISED_PROMPT_WIDGET)).toHaveLength(1);
    expect(widget.element.readOnly).toBe(true);
    expect(widget.element.value).toBe("Revised prompt: second");
    expect(widget.serialize).toBe(false);
    expect(widget.options.serialize).toBe(false);
    expect(widget.options.getMinHeight()).toBe(REVISED_PROMPT_HEIGHT);
    expect(widget.options.getMaxHeight()).toBe(REVISED_PROMPT_HEIGHT);
  });

  it("keeps the prompt box at the height it had before the run, so the node grows instead", () => {
    const node = fakeNode(158);
    expect(keepPromptReadable(node)).toBe(158);
    expect(keptMin(node)).toBe("158");
    node.widgets[0].computedHeight = 50; // squeezed later: the first height is the one kept
    node.widgets.push({ name: "$$node-text-preview" });
    expect(keepPromptReadable(node)).toBe(158);
    showRevisedPrompt(node, "x", document);
    expect(keptMin(node)).toBe("158");
  });

  it("keeps the prompt's height in Nodes 2.0 too, where the node is an element", () => {
    const node = fakeNode(undefined);
    node.id = 7;
    const element = document.createElement("div");
    element.dataset.nodeId = "7";
    const textarea = document.createElement("textarea");
    Object.defineProperty(textarea, "offsetHeight", { value: 114 });
    element.append(textarea);
    document.body.append(element);
    showRevisedPrompt(node, "x", document);
    expect(textarea.style.minHeight).toBe("114px");
    const revised = element.appendChild(node.widgets.at(-1).element);
    expect(revised.style.minHeight).toBe("");
    element.remove();
  });

  it("keeps a readable height within bounds, also for a node never drawn", () => {
    expect(keepPromptReadable(fakeNode(40))).toBe(PROMPT_KEPT_MIN);
    expect(keepPromptReadable(fakeNode(900))).toBe(PROMPT_KEPT_MAX);
    expect(keepPromptReadable(fakeNode(undefined))).toBe(PROMPT_KEPT_MIN);
    expect(keepPromptReadable({ widgets: [{ name: "request_id" }] })).toBeNull();
  });
});
