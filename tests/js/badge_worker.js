// The price badge of litegraph-like nodes, computed on a worker thread: a label that never finishes then
// fails its test (the test ends the worker) instead of hanging the whole run.
import { parentPort, workerData } from "node:worker_threads";
import { attachPriceBadge } from "../../web/grok_prices.js";

/** A node whose count widget holds `count` within `range` (the widget's own options), its prompt fed by a
 * Prompt List holding `prompts` when given. */
function node({ count, range, prompts }) {
  const list = prompts === undefined ? null : {
    type: "FalGrokImaginePromptList",
    widgets: [{ name: "prompts", value: prompts }],
    inputs: [{ name: "prompts", link: null, widget: { name: "prompts" } }],
  };
  const options = range ? { min: range[0], max: range[1] } : undefined;
  return {
    type: "FalGrokImagineImage",
    widgets: [{ name: "num_images", value: count, ...(options ? { options } : {}) }],
    inputs: list ? [{ name: "prompt", link: 3, widget: { name: "prompt" } }] : [],
    badges: [],
    getInputNode: () => list,
  };
}

parentPort.postMessage(workerData.nodes.map((spec) => attachPriceBadge(node(spec), () => workerData.entry).badge.text));
