// After a run: the revised prompt on the node, and a prompt box that stays readable. Pure helpers,
// tested with vitest + jsdom.

// ---------------------------------------------------------------------------------------------
// After a run: the revised prompt, and a prompt box that stays readable

/** The revised prompt in a node's `executed` message (the Python node sends it as ui.text). */
export function revisedPromptOf(message) {
  const text = message?.text?.[0];
  return typeof text === "string" && text.trim() ? text : null;
}

export const REVISED_PROMPT_WIDGET = "$$grok-revised-prompt";
/** The revised-prompt box's fixed height on the classic canvas (three lines and a margin). */
export const REVISED_PROMPT_HEIGHT = 60;

/**
 * Show the revised prompt on the node in a read-only text box of a small fixed height. The widget is
 * never serialized, so saved workflows keep exactly the node's own widget values.
 */
export function showRevisedPrompt(node, text, doc = document) {
  let widget = node.widgets?.find((w) => w.name === REVISED_PROMPT_WIDGET);
  if (!widget) {
    keepPromptReadable(node, doc);
    const box = doc.createElement("textarea");
    box.readOnly = true;
    box.className = "comfy-multiline-input grok-imagine-revised-prompt";
    box.title = "The prompt fal actually used (Grok rewrites prompts)";
    box.style.opacity = "0.85";
    box.style.resize = "none";
    widget = node.addDOMWidget(REVISED_PROMPT_WIDGET, "grok_revised_prompt", box, {
      serialize: false,
      hideOnZoom: true,
      getMinHeight: () => REVISED_PROMPT_HEIGHT,
      getMaxHeight: () => REVISED_PROMPT_HEIGHT,
      getValue: () => box.value,
      setValue: (value) => {
        box.value = value;
      },
    });
    widget.serialize = false;
  }
  widget.value = `Revised prompt: ${text}`;
  return widget;
}

/** The prompt keeps at least this height (px, the widget's slot) after a run, up to PROMPT_KEPT_MAX. */
export const PROMPT_KEPT_MIN = 100;
export const PROMPT_KEPT_MAX = 240;
const MIN_HEIGHT_VAR = "--comfy-widget-min-height";

/** Widgets a run adds to a node: progress text, image previews, the revised prompt. */
export function isRunWidget(widget) {
  return typeof widget?.name === "string" && widget.name.startsWith("$$");
}

/**
 * Before a run's widgets (progress text, previews, revised prompt) join the node, pin the prompt
 * box's height, so that the node grows instead of the prompt shrinking:
 * - the classic canvas shares a node's free height among its growable widgets and would squeeze the
 *   prompt to its 50 px minimum: the prompt keeps the height it had (at least PROMPT_KEPT_MIN, at most
 *   PROMPT_KEPT_MAX) as its minimum, through the CSS variable both frontends read
 *   (`--comfy-widget-min-height`), and the canvas grows the node to fit;
 * - Nodes 2.0 lays the node out as a grid in which the prompt's row gives up height to the revised
 *   prompt's: its textarea keeps its height as a CSS min-height, and the node grows.
 * Returns the height kept on the canvas, or null when the node has no prompt box.
 */
export function keepPromptReadable(node, doc = globalThis.document) {
  const prompt = node.widgets?.find((w) => w.name === "prompt");
  const el = prompt?.element ?? prompt?.inputEl;
  if (!el?.style) return null;
  keepVuePromptHeight(node, doc);
  if (node.grokImagineKeptPromptHeight) return node.grokImagineKeptPromptHeight;
  const runWidgets = (node.widgets ?? []).some(isRunWidget);
  const measured = Number(prompt.computedHeight);
  const base = !runWidgets && Number.isFinite(measured) && measured > 0 ? measured : PROMPT_KEPT_MIN;
  const kept = clampKept(base);
  el.style.setProperty(MIN_HEIGHT_VAR, String(kept));
  node.grokImagineKeptPromptHeight = kept;
  return kept;
}

const clampKept = (height) => Math.round(Math.min(PROMPT_KEPT_MAX, Math.max(PROMPT_KEPT_MIN, height)));

/** Nodes 2.0: the node is an element `[data-node-id]`; its first textarea is the prompt. */
function keepVuePromptHeight(node, doc) {
  if (node.id === undefined || node.id === null || !doc?.querySelector) return;
  const id = String(node.id).replace(/["\\]/g, "");
  const textarea = doc.querySelector(`[data-node-id="${id}"] textarea:not(.grok-imagine-revised-prompt)`);
  if (!textarea || textarea.dataset.grokImagineKept) return;
  const height = textarea.offsetHeight;
  if (!(height > 0)) return;
  textarea.style.minHeight = `${clampKept(height)}px`;
  textarea.dataset.grokImagineKept = "1";
}
