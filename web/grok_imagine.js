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

/** The label as the classic canvas of a frontend without node.badges shows it: drawn in the title bar. */
function drawFallbackBadge(node, ctx) {
  const badge = node.grokImaginePrice?.badge;
  if (!badge?.visible || node.flags?.collapsed) return;
  const titleHeight = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  const width = badge.getWidth(ctx);
  badge.draw(ctx, node.size[0] - width - 6, -titleHeight + (titleHeight - badge.height) / 2);
}

function watchWidgets(node) {
  for (const widget of node.widgets ?? []) {
    if (widget.grokImagineWatched) continue;
    const callback = widget.callback;
    widget.callback = function () {
      const result = callback?.apply(this, arguments);
      refreshPrice(node);
      return result;
    };
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
      name: "Spend and daily limit",
      tooltip:
        "What fal billed for this pack's requests (today, this month, since ComfyUI started) and the daily " +
        "limit: a run that would pass it is refused before anything is sent.",
      defaultValue: "",
      type: () => buildSpendPanel(document, request),
    },
  ],
  async setup() {
    await pricingReady;
    for (const node of allNodes()) refreshPrice(node);
    app.graph?.setDirtyCanvas(true, true);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData.category?.startsWith(CATEGORY)) return;
    await pricingReady;
    const nodeClass = nodeData.name;
    const entryOf = () => pricing.nodes?.[nodeClass];

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      // Pin the prompt box before the first widget of a run (progress text, previews) joins the node.
      const addCustomWidget = this.addCustomWidget;
      if (typeof addCustomWidget === "function") {
        this.addCustomWidget = function (widget) {
          if (isRunWidget(widget)) keepPromptReadable(this);
          return addCustomWidget.apply(this, arguments);
        };
      }
      if (entryOf()) {
        this.grokImaginePrice = attachPriceBadge(this, entryOf, app.extensionManager);
        watchWidgets(this);
      }
      return result;
    };

    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      watchWidgets(this);
      refreshPrice(this);
      return result;
    };

    const onConnectionsChange = nodeType.prototype.onConnectionsChange;
    nodeType.prototype.onConnectionsChange = function () {
      const result = onConnectionsChange?.apply(this, arguments);
      refreshPrice(this);
      return result;
    };

    const onWidgetChanged = nodeType.prototype.onWidgetChanged;
    nodeType.prototype.onWidgetChanged = function () {
      const result = onWidgetChanged?.apply(this, arguments);
      refreshPrice(this);
      return result;
    };

    // The classic canvas calls this on every frame: the label follows even a change no hook saw.
    // A Prompt List feeding this node changes its price too.
    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const drawn = onDrawForeground?.apply(this, arguments);
      const price = this.grokImaginePrice;
      if (price) {
        price.refresh();
        if (!price.usesBadges) drawFallbackBadge(this, ctx);
      }
      return drawn;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const result = onExecuted?.apply(this, arguments);
      const revised = revisedPromptOf(message);
      if (revised) showRevisedPrompt(this, revised);
      return result;
    };

    if (nodeClass === "FalGrokImaginePromptList") {
      // Its number of prompts multiplies the price of the Grok nodes it feeds.
      const refreshFed = (node) => {
        (node.outputs ?? []).forEach((_, slot) => {
          for (const target of node.getOutputNodes?.(slot) ?? []) refreshPrice(target);
        });
      };
      const created = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const result = created?.apply(this, arguments);
        const node = this;
        const prompts = node.widgets?.find((w) => w.name === "prompts");
        const element = prompts?.element ?? prompts?.inputEl;
        element?.addEventListener?.("input", () => refreshFed(node));
        const callback = prompts?.callback;
        if (prompts) {
          prompts.callback = function () {
            const out = callback?.apply(this, arguments);
            refreshFed(node);
            return out;
          };
        }
        return result;
      };
    }
  },
});
