import { describe, expect, it, vi } from "vitest";
import {
  REVISED_PROMPT_WIDGET,
  ROUTES,
  buildKeyPanel,
  describeKeyStatus,
  formatUsd,
  priceLabel,
  revisedPromptOf,
  showRevisedPrompt,
} from "../../web/grok_imagine_core.js";

const entry = {
  count_input: "num_images",
  tier_input: "tier",
  max_images_per_request: 4,
  tiers: {
    standard: { endpoint: "xai/grok-imagine-image", price_per_image: 0.02 },
    quality: { endpoint: "xai/grok-imagine-image/quality/text-to-image", price_per_image: null },
  },
};

describe("the price shown on the node before a run", () => {
  it("shows the per-run price for one image", () => {
    expect(priceLabel(entry, { num_images: 1 })).toBe("$0.02 per run");
  });
  it("multiplies by the number of images that will be billed", () => {
    expect(priceLabel(entry, { num_images: 4 })).toBe("4 × $0.02 = $0.08");
  });
  it("says how many requests a batch beyond four images takes", () => {
    expect(priceLabel(entry, { num_images: 10 })).toBe("10 × $0.02 = $0.20 · 3 requests");
  });
  it("follows the tier, and says so when fal publishes no price", () => {
    expect(priceLabel(entry, { num_images: 2, tier: "quality" })).toBe("2 images · price unknown");
    expect(priceLabel(entry, { num_images: 16, tier: "quality" })).toBe("16 images · price unknown · 4 requests");
  });
  it("treats a workflow saved before the tier input existed as standard", () => {
    expect(priceLabel(entry, { num_images: 2 })).toBe("2 × $0.02 = $0.04");
  });
  it("shows nothing for nodes this pack does not bill", () => {
    expect(priceLabel(undefined, {})).toBeNull();
  });
  it("keeps sub-cent prices readable", () => {
    expect(formatUsd(0.005)).toBe("$0.005");
    expect(formatUsd(0.32)).toBe("$0.32");
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
    panel.querySelector("button").click();
    await vi.waitFor(() => expect(calls.length).toBe(2));
    expect(calls[1]).toEqual({ method: "POST", path: ROUTES.key, body: { key: "secret-id:secret-value-wxyz" } });
    expect(input.value).toBe("");
    expect(document.body.innerHTML).not.toContain("secret-value");
    await vi.waitFor(() => expect(panel.textContent).toContain("…wxyz"));
  });

  it("shows the server's error when a key is refused", async () => {
    const request = vi.fn(async (method) =>
      method === "POST"
        ? { ok: false, json: { error: "That does not look like a fal key (one line, no spaces)." } }
        : { ok: true, json: { configured: false } },
    );
    const panel = buildKeyPanel(document, request);
    panel.querySelector("input").value = "bad key";
    panel.querySelector("button").click();
    await vi.waitFor(() => expect(panel.textContent).toContain("does not look like a fal key"));
  });
});

describe("the revised prompt on the node after a run", () => {
  function fakeNode() {
    const node = { widgets: [{ name: "prompt", value: "x" }] };
    node.addDOMWidget = (name, type, element, options) => {
      const widget = { name, type, element, options };
      Object.defineProperty(widget, "value", { get: options.getValue, set: options.setValue });
      node.widgets.push(widget);
      return widget;
    };
    return node;
  }

  it("reads it from the executed message", () => {
    expect(revisedPromptOf({ text: ["a fox at dawn"] })).toBe("a fox at dawn");
    expect(revisedPromptOf({ text: [""] })).toBeNull();
    expect(revisedPromptOf({ images: [] })).toBeNull();
  });

  it("shows it in one read-only box that is never saved into the workflow", () => {
    const node = fakeNode();
    showRevisedPrompt(node, "first", document);
    const widget = showRevisedPrompt(node, "second", document);
    expect(node.widgets.filter((w) => w.name === REVISED_PROMPT_WIDGET)).toHaveLength(1);
    expect(widget.element.readOnly).toBe(true);
    expect(widget.element.value).toBe("Revised prompt: second");
    expect(widget.serialize).toBe(false);
    expect(widget.options.serialize).toBe(false);
  });
});
