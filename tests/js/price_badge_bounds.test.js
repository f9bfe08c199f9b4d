// @vitest-environment node
// A crafted or mistyped workflow never freezes the tab through the price badge: the canvas asks for the label
// on every frame, so its cost must not grow with what the workflow holds.
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { attachPriceBadge, promptCount } from "../../web/grok_prices.js";
import PRICING from "./fixtures/pricing.json";

const IMAGE = PRICING.nodes.FalGrokImagineImage;
const RANGE = [1, 16]; // num_images as the node defines it (nodes/widgets.py), the widget's options

/**
 * The badge's text for each node spec (see badge_worker.js), or a failure when it takes over `seconds` or
 * more memory than a tab would spare (a label that grows an array without end ends the worker, not vitest).
 */
function labelsOffThread(nodes, seconds = 20) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./badge_worker.js", import.meta.url), {
      workerData: { entry: IMAGE, nodes },
      resourceLimits: { maxOldGenerationSizeMb: 64 },
    });
    const timer = setTimeout(() => {
      worker.terminate();
      reject(new Error(`the price label did not finish within ${seconds} s`));
    }, seconds * 1000);
    worker.once("message", (labels) => {
      clearTimeout(timer);
      worker.terminate();
      resolve(labels);
    });
    worker.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

describe("a crafted or mistyped num_images", () => {
  it("is priced as the widget's own range allows: above it as its largest, below it as one", async () => {
    const counts = [16, 17, 1e7, 1e300, Infinity, "1e300", 2.7, 0, -0, -5, -Infinity, NaN, "lots", null];
    const labels = await labelsOffThread(counts.map((count) => ({ count, range: RANGE })));
    const most = "$0.32 · 16 images · 4 requests";
    const one = "$0.02 · 1 image";
    expect(labels).toEqual([most, most, most, most, most, most, "$0.04 · 2 images", one, one, one, one, one, one, one]);
  });

  it("costs the same to label whatever it holds, where the widget has no range too", async () => {
    const [huge, infinite] = await labelsOffThread([{ count: 1e300 }, { count: Infinity }]);
    expect(huge).toMatch(/1e\+300 images/);
    expect(infinite).toBe("$0.02 · 1 image");
  });
});

describe("a Prompt List feeding the node", () => {
  it("counts its prompts as the Python node does (its line breaks and blanks)", () => {
    expect(promptCount("a fox\n\n  a bear \r\nan owl\r")).toBe(3);
    expect(promptCount("one\u2028two\u2029three\x1cfour\x85five\vsix\fseven")).toBe(7);
    expect(promptCount("real\n\x1f\u3000\t\n\u00a0 \nalso real")).toBe(2); // Python strips these as blanks
    expect(promptCount("\ufeff")).toBe(1); // a lone byte-order mark is text to Python
    expect(promptCount("")).toBe(0);
    expect(promptCount(undefined)).toBe(0);
  });

  it("of a million prompts is read once per change of its text, not on every frame", async () => {
    let reads = 0;
    const text = "a cat\n".repeat(1_000_000);
    const prompts = { toString: () => (reads++, text) }; // what the frontend hands over, watched
    const list = {
      type: "FalGrokImaginePromptList",
      widgets: [{ name: "prompts", value: prompts }],
      inputs: [{ name: "prompts", link: null, widget: { name: "prompts" } }],
    };
    const node = {
      type: "FalGrokImagineImage",
      widgets: [{ name: "num_images", value: 1, options: { min: 1, max: 16 } }],
      inputs: [{ name: "prompt", link: 3, widget: { name: "prompt" } }],
      badges: [],
      getInputNode: () => list,
    };
    const price = attachPriceBadge(node, () => IMAGE);
    for (let frame = 0; frame < 100; frame++) price.refresh();
    expect(price.badge.text).toBe("$20000.00 · 1000000 prompts × 1 image");
    expect(reads).toBe(1);
    list.widgets[0].value = "a cat\na dog";
    price.refresh();
    expect(price.badge.text).toBe("$0.04 · 2 prompts × 1 image");
  });
});
