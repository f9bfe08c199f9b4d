// The price badge of the video nodes: the price of the next run, per second of video, following every widget,
// the inputs connected, and the Grok video node feeding an Edit or an Extend; a rate where only the run knows.
import { describe, expect, it } from "vitest";
import { nodePriceState, priceLabel, videoQuote, videoSource } from "../../web/grok_prices.js";
import PRICING from "./fixtures/pricing.json";

const entry = (node) => PRICING.nodes[node];
const entryFor = (type) => PRICING.nodes[type];
const label = (node, values, state = {}) => priceLabel(entry(node), { values, ...state });

/** A litegraph-like node: widgets (with the duration widget's range), inputs with links, the inputs' origins. */
function fakeNode(type, values, inputs = [], origins = {}) {
  const ranges = { duration: type === "FalGrokImagineVideoExtend" ? [2, 10] : [1, 15] };
  return {
    type,
    comfyClass: type,
    widgets: Object.entries(values).map(([name, value]) => ({
      name,
      value,
      ...(ranges[name] ? { options: { min: ranges[name][0], max: ranges[name][1] } } : {}),
    })),
    inputs: inputs.map(([name, link]) => ({ name, link })),
    isInputConnected(i) {
      return this.inputs[i]?.link != null;
    },
    getInputNode(i) {
      return origins[this.inputs[i]?.name] ?? null;
    },
  };
}

const VIDEO = { duration: 6, aspect_ratio: "auto", resolution: "720p", model: "grok-imagine-video" };

describe("Grok Imagine Video: seconds times the rate of the model and resolution", () => {
  it("prices text to video per second", () => {
    expect(label("FalGrokImagineVideo", VIDEO)).toBe("$0.42 · 6 s at 720p");
    expect(label("FalGrokImagineVideo", { ...VIDEO, resolution: "480p", duration: 10 })).toBe("$0.50 · 10 s at 480p");
    expect(label("FalGrokImagineVideo", { ...VIDEO, model: "grok-imagine-video-1.5", resolution: "1080p", duration: 4 }))
      .toBe("$1.00 · 4 s at 1080p");
  });

  it("adds the input image when 'image' is connected (fal's v1.5 examples: 5 s at 480p $0.41, at 720p $0.71)", () => {
    const v15 = { ...VIDEO, model: "grok-imagine-video-1.5", duration: 5 };
    expect(label("FalGrokImagineVideo", { ...v15, resolution: "480p" }, { connected: ["image"] }))
      .toBe("$0.41 · 5 s at 480p + image");
    expect(label("FalGrokImagineVideo", v15, { connected: ["image"] })).toBe("$0.71 · 5 s at 720p + image");
    expect(label("FalGrokImagineVideo", { ...VIDEO, duration: 5 }, { connected: ["image"] }))
      .toBe("$0.352 · 5 s at 720p + image");
  });

  it("says where fal has no such video instead of a price", () => {
    expect(label("FalGrokImagineVideo", { ...VIDEO, resolution: "1080p" })).toBe("1080p: not with grok-imagine-video");
    expect(label("FalGrokImagineVideo", { ...VIDEO, model: "grok-imagine-video-1.5", resolution: "1080p" },
      { connected: ["image"] })).toBe("1080p: not with grok-imagine-video-1.5 from an image");
  });

  it("multiplies by the prompts of a list, shows the rate when the duration comes from a link", () => {
    expect(label("FalGrokImagineVideo", VIDEO, { runs: 3 })).toBe("$1.26 · 3 prompts × 6 s at 720p");
    expect(label("FalGrokImagineVideo", VIDEO, { countLinked: true })).toBe("$0.07/s at 720p");
  });

  it("keeps a duration no widget allows within the widget's range", () => {
    expect(label("FalGrokImagineVideo", { ...VIDEO, duration: 1e300 }, { countRange: [1, 15] }))
      .toBe("$1.05 · 15 s at 720p");
  });
});

describe("Reference Video: seconds plus the references, known in number only at run time", () => {
  const values = { duration: 8, aspect_ratio: "16:9", resolution: "480p" };

  it("prices one to seven references from 'image' alone", () => {
    expect(label("FalGrokImagineReferenceVideo", values, { connected: ["image"] })).toBe("$0.402–0.414 · 8 s at 480p");
  });

  it("narrows the range with each further input connected", () => {
    expect(label("FalGrokImagineReferenceVideo", { ...values, resolution: "720p" },
      { connected: ["image", "image_2", "image_3"] })).toBe("$0.566–0.574 · 8 s at 720p");
    const all = ["image", "image_2", "image_3", "image_4", "image_5", "image_6", "image_7"];
    expect(label("FalGrokImagineReferenceVideo", values, { connected: all })).toBe("$0.414 · 8 s at 480p");
  });
});

describe("Edit and Extend: priced by their input video", () => {
  it("shows an edit's rate per second of input when the input's length is known only at run time", () => {
    expect(label("FalGrokImagineVideoEdit", { resolution: "auto" })).toBe("$0.06/s of input · at most $0.48");
    expect(label("FalGrokImagineVideoEdit", { resolution: "720p" })).toBe("$0.08/s of input · at most $0.64");
  });

  it("shows the range of an extension of an input of 2 to 15 s at 480p or 720p", () => {
    expect(label("FalGrokImagineVideoExtend", { duration: 6 })).toBe("$0.32–0.57 · 6 s more");
    expect(label("FalGrokImagineVideoExtend", { duration: 6 }, { countLinked: true })).toBe("$0.05–0.07/s + input");
  });

  it("is exact when a Grok video node makes the input, through edits and extensions of it", () => {
    const made = fakeNode("FalGrokImagineVideo", { ...VIDEO, resolution: "480p" });
    const extend = fakeNode("FalGrokImagineVideoExtend", { duration: 6 }, [["video", 1]], { video: made });
    // fal's example: 6 s of 480p extension from a 6 s input costs $0.36
    expect(priceLabel(entryFor(extend.type), nodePriceState(extend, entryFor(extend.type), entryFor)))
      .toBe("$0.36 · 6 s more at 480p");
    made.widgets.find((w) => w.name === "resolution").value = "1080p";
    made.widgets.find((w) => w.name === "model").value = "grok-imagine-video-1.5";
    expect(priceLabel(entryFor(extend.type), nodePriceState(extend, entryFor(extend.type), entryFor)))
      .toBe("$0.48 · 6 s more at 720p");
    const edit = fakeNode("FalGrokImagineVideoEdit", { resolution: "auto" }, [["video", 2]], { video: extend });
    expect(videoSource(extend, entryFor)).toEqual({ seconds: 12, short: 720 });
    expect(priceLabel(entryFor(edit.type), nodePriceState(edit, entryFor(edit.type), entryFor)))
      .toBe("$0.48 · 8 s at 480p");
  });

  it("says when the input is one fal does not extend", () => {
    const long = fakeNode("FalGrokImagineVideo", { ...VIDEO, duration: 15 });
    const extend = fakeNode("FalGrokImagineVideoExtend", { duration: 6 }, [["video", 1]], { video: long });
    const again = fakeNode("FalGrokImagineVideoExtend", { duration: 2 }, [["video", 2]], { video: extend });
    expect(priceLabel(entryFor(again.type), nodePriceState(again, entryFor(again.type), entryFor)))
      .toBe("input of 21 s: fal extends 2–15 s");
  });

  it("knows nothing of a video from elsewhere, or of a duration fed by a link", () => {
    expect(videoSource(fakeNode("LoadVideo", { file: "a.mp4" }), entryFor)).toBeNull();
    expect(videoSource(fakeNode("FalGrokImagineVideoResult", { request_id: "x" }), entryFor)).toBeNull();
    const linked = fakeNode("FalGrokImagineVideo", VIDEO, [["duration", 9]]);
    expect(videoSource(linked, entryFor)).toBeNull();
    const extend = fakeNode("FalGrokImagineVideoExtend", { duration: 6 }, [["video", 1]], {
      video: fakeNode("LoadVideo", {}),
    });
    expect(priceLabel(entryFor(extend.type), nodePriceState(extend, entryFor(extend.type), entryFor)))
      .toBe("$0.32–0.57 · 6 s more");
  });

  it("prices what the ledger records: the same sums as the Python requests", () => {
    const quote = videoQuote(entry("FalGrokImagineVideoExtend"), { values: { duration: 10 },
      source: { seconds: 4, short: 720 } });
    expect(quote.low).toBeCloseTo(10 * 0.07 + 4 * 0.01);
  });
});
