// Grok Imagine (fal) web extension: the price badge on each billed node, the revised prompt after a run
// (without squeezing the prompt box), and the fal key and spend panels under Settings > Grok Imagine (fal).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  ROUTES,
  attachPriceBadge,
  buildKeyPanel,
  buildSpendPanel,
  isRunWidget,
  keepPromptReadable,
  refreshSpendPanels,
  requestInit,
  revisedPromptOf,
  showRevisedPrompt,
} from "./grok_imagine_core.js";

async function request(method, path, body) {
  try {
    const response = await api.fetchApi(path, requestInit(method, body));
    let json = null;
    try {
      json = await response.json();
    } catch {
      json = null;
    }
    return { ok: response.ok, json };
  } catch (error) {
    return { ok: false, json: { error: String(error) } };
  }
}

let pricing = { nodes: {} };
// Asked for once, as the extension loads; node definitions wait for it, so every node knows its price.
const pricingReady = request("GET", ROUTES.pricing).then((result) => {
  if (result.ok && result.json?.nodes) pricing = result.json;
});
const CATEGORY = "fal/Grok Imagine";

function allNodes(graph = app.graph) {
  const nodes = [...(graph?._nodes ?? graph?.nodes ?? [])];
  for (const subgraph of graph?.subgraphs?.values?.() ?? []) nodes.push(...(subgraph._nodes ?? subgraph.nodes ?? []));
  return nodes;
}

/** Recompute a node's price label; redraw the canvas when it changed. */
function refreshPrice(node) {
  if (node.grokImaginePrice?.refresh()) node.setDirtyCanvas?.(true, true);
}

/**
 * Recompute the price of the nodes `node` feeds, and of those they feed: a Prompt List's prompts multiply a
 * Grok node's price, and a Grok video node's duration and resolution price the Edit or Extend it feeds.
 */
function refreshFed(node, hops = 0) {
  if (hops > 8) return;
  (node.outputs ?? []).forEach((_, slot) => {
    for (const target of node.getOutputNodes?.(slot) ?? []) {
      refreshPrice(target);
      refreshFed(target, hops + 1);
    }
  });
}

/** The label as the classic canvas of a frontend without node.badges shows it: drawn in the title bar. */
function drawFallbackBadge(node, ctx) {
  const badge = node.grokImaginePrice?.badge;
  if (!badge?.visible || node.flags?.collapsed) return;
  const titleHeight = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  const width = badge.getWidth(ctx);
  badge.draw(ctx, node.size[0] - width - 6, -titleHeight + (titleHeight - badge.height) / 2);
}

/**
 * Chain `extra` after `target[name]` (the frontend's own method, or another extension's): the original
 * runs first and its result is returned.
 */
function after(target, name, extra) {
  const original = target[name];
  target[name] = function (...args) {
    const result = original?.apply(this, args);
    extra.apply(this, args);
    return result;
  };
}

function watchWidgets(node) {
  for (const widget of node.widgets ?? []) {
    if (widget.grokImagineWatched) continue;
    after(widget, "callback", () => {
      refreshPrice(node);
      refreshFed(node);
    });
    widget.grokImagineWatched = true;
  }
}

app.registerExtension({
  name: "grok_imagine_fal.extension",
  settings: [
    {
      id: "GrokImagine.FalKey",
      category: ["Grok Imagine (fal)", "fal API key", "Key"],
      name: "fal API key",
      tooltip: "Whether a fal key is configured and where it comes from. The key itself is never shown.",
      defaultValue: "",
      type: () => buildKeyPanel(document, request),
    },
    {
      id: "GrokImagine.Spend",
      category: ["Grok Imagine (fal)", "Spend", "Spend"],
      name: "Spend, fal balance, daily limit and balance floor",
      tooltip:
        "What fal billed for this pack's requests (today, this month, since ComfyUI started), your fal balance, " +
        "the daily limit and the balance floor: a run that would pass the limit, or that the balance cannot pay " +
        "above the floor, is refused before anything is sent.",
      defaultValue: "",
      type: () => buildSpendPanel(document, request),
    },
  ],
  async setup() {
    // After each run the spend and the fal balance changed: an open spend panel asks again.
    for (const event of ["execution_success", "execution_error", "execution_interrupted"]) {
      api.addEventListener(event, () => refreshSpendPanels());
    }
    await pricingReady;
    for (const node of allNodes()) refreshPrice(node);
    app.graph?.setDirtyCanvas(true, true);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData.category?.startsWith(CATEGORY)) return;
    await pricingReady;
    const nodeClass = nodeData.name;
    const entryOf = () => pricing.nodes?.[nodeClass];
    const entryFor = (type) => pricing.nodes?.[type];

    const hooks = nodeType.prototype;
    after(hooks, "onNodeCreated", function () {
      // Pin the prompt box before the first widget of a run (progress text, previews) joins the node.
      const addCustomWidget = this.addCustomWidget;
      if (typeof addCustomWidget === "function") {
        this.addCustomWidget = function (widget) {
          if (isRunWidget(widget)) keepPromptReadable(this);
          return addCustomWidget.apply(this, arguments);
        };
      }
      if (entryOf()) {
        this.grokImaginePrice = attachPriceBadge(this, entryOf, app.extensionManager, entryFor);
        watchWidgets(this);
      }
    });
    after(hooks, "onConfigure", function () {
      watchWidgets(this);
      refreshPrice(this);
    });
    for (const name of ["onConnectionsChange", "onWidgetChanged"]) {
      after(hooks, name, function () {
        refreshPrice(this);
        refreshFed(this);
      });
    }
    // The classic canvas calls this on every frame: the label follows even a change no hook saw.
    // A Prompt List feeding this node changes its price too.
    after(hooks, "onDrawForeground", function (ctx) {
      const price = this.grokImaginePrice;
      if (price) {
        price.refresh();
        if (!price.usesBadges) drawFallbackBadge(this, ctx);
      }
    });
    after(hooks, "onExecuted", function (message) {
      const revised = revisedPromptOf(message);
      if (revised) showRevisedPrompt(this, revised);
    });

    if (nodeClass === "FalGrokImaginePromptList") {
      // Its number of prompts multiplies the price of the Grok nodes it feeds.
      after(hooks, "onNodeCreated", function () {
        const prompts = this.widgets?.find((w) => w.name === "prompts");
        if (!prompts) return;
        const element = prompts.element ?? prompts.inputEl;
        element?.addEventListener?.("input", () => refreshFed(this));
        after(prompts, "callback", () => refreshFed(this));
      });
    }
  },
});
