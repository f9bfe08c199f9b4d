// Grok Imagine (fal) web extension: the price on the node before a run, the revised prompt after it,
// and the fal key setting.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { ROUTES, buildKeyPanel, priceLabel, revisedPromptOf, showRevisedPrompt } from "./grok_imagine_core.js";

async function request(method, path, body) {
  try {
    const response = await api.fetchApi(path, {
      method,
      headers: body ? { "Content-Type": "application/json" } : undefined,
      body: body ? JSON.stringify(body) : undefined,
    });
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

function widgetValues(node) {
  const values = {};
  for (const widget of node.widgets ?? []) values[widget.name] = widget.value;
  return values;
}

function drawPrice(node, ctx) {
  const label = priceLabel(pricing.nodes[node.comfyClass ?? node.type], widgetValues(node));
  if (!label || node.flags?.collapsed) return;
  const titleHeight = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  ctx.save();
  ctx.font = "12px sans-serif";
  const width = ctx.measureText(label).width + 12;
  const x = node.size[0] - width - 6;
  const y = -titleHeight + 6;
  ctx.fillStyle = "rgba(20, 90, 50, 0.9)";
  ctx.beginPath();
  ctx.roundRect ? ctx.roundRect(x, y, width, titleHeight - 12, 6) : ctx.rect(x, y, width, titleHeight - 12);
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.textBaseline = "middle";
  ctx.fillText(label, x + 6, y + (titleHeight - 12) / 2);
  ctx.restore();
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
  ],
  async setup() {
    const result = await request("GET", ROUTES.pricing);
    if (result.ok && result.json?.nodes) pricing = result.json;
    app.graph?.setDirtyCanvas(true, true);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData.category?.startsWith("fal/Grok Imagine")) return;
    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const drawn = onDrawForeground?.apply(this, arguments);
      if (pricing.nodes[nodeData.name]) drawPrice(this, ctx);
      return drawn;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const result = onExecuted?.apply(this, arguments);
      const revised = revisedPromptOf(message);
      if (revised) showRevisedPrompt(this, revised);
      return result;
    };
  },
});
