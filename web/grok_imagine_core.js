// Pure helpers of the Grok Imagine (fal) web extension: no ComfyUI imports, tested with vitest + jsdom.

export const ROUTES = {
  pricing: "/grok_imagine/pricing",
  key: "/grok_imagine/key",
};

/** "$0.02" style money, with enough digits for sub-cent prices. */
export function formatUsd(amount) {
  const digits = amount < 0.1 && amount !== 0 ? 3 : 2;
  return `$${amount.toFixed(digits).replace(/(\.\d\d)0$/, "$1")}`;
}

/**
 * The price label for a node, from its pricing entry (served by Python) and its widget values:
 * the tier picks the endpoint and its price; every image is billed; above four images the node
 * sends one request per four.
 * Returns null when the node is not billed by this pack.
 */
export function priceLabel(entry, widgetValues) {
  if (!entry) return null;
  const count = Math.max(1, Number(widgetValues?.[entry.count_input] ?? 1) || 1);
  const tier = widgetValues?.[entry.tier_input] ?? "standard";
  const perImage = (entry.tiers?.[tier] ?? entry.tiers?.standard)?.price_per_image;
  const perRequest = entry.max_images_per_request ?? 4;
  const requests = Math.ceil(count / perRequest);
  const images = `${count} image${count === 1 ? "" : "s"}`;
  const suffix = requests > 1 ? ` · ${requests} requests` : "";
  if (perImage === null || perImage === undefined) {
    return `${images} · price unknown${suffix}`;
  }
  if (count === 1) return `${formatUsd(perImage)} per run`;
  return `${count} × ${formatUsd(perImage)} = ${formatUsd(perImage * count)}${suffix}`;
}

/** One sentence about the key status; never more of the key than its last four characters. */
export function describeKeyStatus(status) {
  if (!status || !status.configured) {
    return "No fal key is configured. Paste one below, or set FAL_KEY before starting ComfyUI.";
  }
  const tail = status.last4 ? ` (…${status.last4})` : "";
  let text = `A fal key${tail} is configured from ${status.source}.`;
  if (status.environment_wins) {
    text += " A stored key exists too, but the environment variable wins.";
  }
  return text;
}

/**
 * The settings panel element: status line, a password field and Save / Remove buttons.
 * `request(method, path, body)` performs an HTTP call and resolves to {ok, json}.
 * The key is sent once to the server and never kept in the page or in ComfyUI's settings.
 */
export function buildKeyPanel(doc, request) {
  const root = doc.createElement("div");
  root.className = "grok-imagine-key-panel";
  root.style.cssText = "display:flex;flex-direction:column;gap:6px;min-width:320px";

  const status = doc.createElement("div");
  status.className = "grok-imagine-key-status";
  status.textContent = "Checking…";

  const row = doc.createElement("div");
  row.style.cssText = "display:flex;gap:6px";
  const input = doc.createElement("input");
  input.type = "password";
  input.autocomplete = "off";
  input.placeholder = "Paste a fal key (stored on the ComfyUI server, not in workflows)";
  input.style.flex = "1";
  const save = doc.createElement("button");
  save.textContent = "Save key";
  const remove = doc.createElement("button");
  remove.textContent = "Remove stored key";
  row.append(input, save, remove);
  root.append(status, row);

  const show = (result) => {
    if (result.ok) {
      status.textContent = describeKeyStatus(result.json);
      remove.disabled = !result.json?.key_file_present;
    } else {
      status.textContent = result.json?.error ?? "The Grok Imagine server routes did not answer.";
    }
  };
  const refresh = async () => show(await request("GET", ROUTES.key));

  save.addEventListener("click", async () => {
    const key = input.value.trim();
    input.value = "";
    if (!key) {
      status.textContent = "Paste a key first.";
      return;
    }
    show(await request("POST", ROUTES.key, { key }));
  });
  remove.addEventListener("click", async () => show(await request("DELETE", ROUTES.key)));

  root.refresh = refresh;
  refresh();
  return root;
}

/** The revised prompt in a node's `executed` message (the Python node sends it as ui.text). */
export function revisedPromptOf(message) {
  const text = message?.text?.[0];
  return typeof text === "string" && text.trim() ? text : null;
}

export const REVISED_PROMPT_WIDGET = "$$grok-revised-prompt";

/**
 * Show the revised prompt on the node in a read-only text box. The widget is never serialized,
 * so saved workflows keep exactly the node's own widget values.
 */
export function showRevisedPrompt(node, text, doc = document) {
  let widget = node.widgets?.find((w) => w.name === REVISED_PROMPT_WIDGET);
  if (!widget) {
    const box = doc.createElement("textarea");
    box.readOnly = true;
    box.className = "comfy-multiline-input";
    box.title = "The prompt fal actually used (Grok rewrites prompts)";
    box.style.opacity = "0.85";
    widget = node.addDOMWidget(REVISED_PROMPT_WIDGET, "grok_revised_prompt", box, {
      serialize: false,
      hideOnZoom: true,
      getMinHeight: () => 64,
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
