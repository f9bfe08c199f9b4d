// Settings > Grok Imagine (fal): the fal key panel and the spend panel. Pure helpers, tested with vitest + jsdom.

import { formatUsd, plural, round6 } from "./grok_prices.js";
import { ROUTES } from "./grok_routes.js";

// ---------------------------------------------------------------------------------------------
// The fal key panel

/** One sentence about the key status; never more of the key than its last four characters. */
export function describeKeyStatus(status) {
  if (!status || !status.configured) {
    if (status?.problem) return String(status.problem); // the server's sentence names the source and the fix
    return "No fal key is configured. Paste one below, or set FAL_KEY before starting ComfyUI.";
  }
  const tail = status.last4 ? ` (…${status.last4})` : "";
  let text = `A fal key${tail} is configured from ${status.source}.`;
  if (status.environment_wins) {
    text += " A stored key exists too, but the environment variable wins.";
  }
  if (status.problem) text += ` It cannot be used: ${status.problem}`;
  return text;
}

const PANEL_CSS = "display:flex;flex-direction:column;gap:6px;min-width:320px;max-width:640px";
const PROBLEM_COLOR = "#f0a020";

function element(doc, tag, props = {}, children = []) {
  const el = doc.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "style") el.style.cssText = value;
    else el[key] = value;
  }
  el.append(...children);
  return el;
}

/**
 * The settings panel element: status line, a password field and Save / Remove buttons.
 * `request(method, path, body)` performs an HTTP call and resolves to {ok, json}.
 * The key is sent once to the server and never kept in the page or in ComfyUI's settings.
 */
export function buildKeyPanel(doc, request) {
  const root = element(doc, "div", { className: "grok-imagine-key-panel", style: PANEL_CSS });
  const status = element(doc, "div", { className: "grok-imagine-key-status", textContent: "Checking…" });
  const input = element(doc, "input", {
    type: "password",
    autocomplete: "off",
    placeholder: "Paste a fal key (stored on the ComfyUI server, not in workflows)",
    style: "flex:1;min-width:0",
  });
  input.setAttribute("aria-label", "fal key");
  const save = element(doc, "button", { textContent: "Save key", className: "grok-imagine-save-key" });
  const remove = element(doc, "button", {
    textContent: "Remove stored key",
    className: "grok-imagine-remove-key",
  });
  const row = element(doc, "div", { style: "display:flex;gap:6px" }, [input, save, remove]);
  root.append(status, row);

  const show = (result) => {
    if (result.ok) {
      status.textContent = describeKeyStatus(result.json);
      status.style.color = result.json?.problem ? PROBLEM_COLOR : "";
      remove.disabled = !result.json?.key_file_present;
    } else {
      status.textContent = result.json?.error ?? "The Grok Imagine server routes did not answer.";
      status.style.color = PROBLEM_COLOR;
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
  remove.addEventListener("click", async () => show(await request("DELETE", ROUTES.key, {})));

  root.refresh = refresh;
  refresh();
  return root;
}

// ---------------------------------------------------------------------------------------------
// The spend panel

export const RECENT_SHOWN = 8;
const ENV_SOURCE = /environment variable/i;

/** "14:05" for today, "2026-12-03 14:05" for an older day (local time). */
export function formatWhen(at, now = Date.now()) {
  const date = new Date(at * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  const day = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return day(date) === day(new Date(now)) ? time : `${day(date)} ${time}`;
}

/** The endpoint without the model family's common prefix ("quality/edit", "v2.0/text-to-image"). */
export function shortEndpoint(endpoint) {
  const text = String(endpoint ?? "");
  if (text === "xai/grok-imagine-image") return "text-to-image";
  return text.replace(/^xai\/grok-imagine-image\//, "");
}

/** What the daily limit is and where it comes from, in one or two sentences. */
export function describeLimit(spend) {
  const limit = spend?.daily_limit_usd;
  if (limit === null || limit === undefined) return "No daily limit is set.";
  const left = Math.max(0, limit - (spend.today_usd ?? 0));
  const remaining = ` ${formatUsd(left)} left today.`;
  if (ENV_SOURCE.test(spend.limit_source ?? "")) {
    return (
      `Daily limit ${formatUsd(limit)}, set by ${spend.limit_source}: it wins over a limit set here ` +
      `(unset it to use this one).${remaining}`
    );
  }
  return `Daily limit ${formatUsd(limit)}, set here (${spend.limit_source ?? "Settings"}).${remaining}`;
}

/** "$12.50", "-$0.18" (fal lets a balance go below zero). */
export function formatBalance(amount) {
  return amount < 0 ? `-${formatUsd(-amount)}` : formatUsd(amount);
}

/**
 * The fal balance line: {text, problem, title}; null when no key is configured (nothing is shown), undefined
 * when the answer carries no balance (a POST's: what is shown stays).
 */
export function describeBalance(spend, now = Date.now()) {
  if (!spend || !("fal_balance_status" in spend)) return undefined;
  const error = spend.fal_balance_error ?? "";
  switch (spend.fal_balance_status) {
    case "no_key":
      return null;
    case "known": {
      const usd = spend.fal_balance_usd;
      let text = `fal balance ${formatBalance(usd)} (read at ${formatWhen(spend.fal_balance_read_at, now)}).`;
      const floor = spend.balance_floor_usd;
      if (typeof floor === "number" && floor > 0) text += ` ${formatBalance(round6(usd - floor))} above the floor.`;
      return { text, problem: false, title: "" };
    }
    case "key_refused":
      return { text: `fal refused this key when asked for the balance. ${error}`.trim(), problem: true, title: error };
    default:
      return {
        text: "fal balance unavailable: runs are not held back (fal decides).",
        problem: true,
        title: error,
      };
  }
}

/** What the balance floor is and where it comes from. */
export function describeFloor(spend) {
  const floor = spend?.balance_floor_usd;
  if (floor === null || floor === undefined) return "No balance floor is set: runs may spend the whole fal balance.";
  const rule = "a run that would take the fal balance below it is refused before anything is sent.";
  if (ENV_SOURCE.test(spend.floor_source ?? "")) {
    return (
      `Balance floor ${formatUsd(floor)}, set by ${spend.floor_source}: it wins over a floor set here ` +
      `(unset it to use this one); ${rule}`
    );
  }
  return `Balance floor ${formatUsd(floor)}, set here (${spend.floor_source ?? "Settings"}): ${rule}`;
}

/** Today's, this month's and this session's spend, in one line. */
export function describeTotals(spend) {
  return (
    `Today ${formatUsd(spend?.today_usd ?? 0)} · this month ${formatUsd(spend?.month_usd ?? 0)} · ` +
    `this session ${formatUsd(spend?.session_usd ?? 0)}`
  );
}

/** One line per recent request: time, endpoint, images (and references), price. */
export function recentRows(spend, now = Date.now(), shown = RECENT_SHOWN) {
  return (spend?.recent ?? []).slice(0, shown).map((r) => ({
    when: formatWhen(r.at, now),
    endpoint: shortEndpoint(r.endpoint),
    images: r.references ? `${plural(r.images, "image")} + ${plural(r.references, "ref")}` : plural(r.images, "image"),
    price: typeof r.price_usd === "number" ? formatUsd(r.price_usd) : "unknown",
    requestId: r.request_id,
  }));
}

/** The number typed as the daily limit (or, `noun` "floor", the balance floor), or an error sentence. */
export function parseLimit(text, noun = "limit") {
  const raw = String(text ?? "").trim().replace(/^\$/, "").replace(",", ".");
  if (!raw) return { error: `Type a ${noun} in US dollars first (for example 5 or 12.50).` };
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) return { error: `"${text}" is not an amount of US dollars (0 or more).` };
  return { value: round6(value) };
}

const BALANCE_FIELDS = ["fal_balance_usd", "fal_balance_read_at", "fal_balance_status", "fal_balance_error"];

// The spend panels built and not yet closed: refreshed after each run.
const spendPanels = new Set();

/** Refresh every spend panel on the page (after a run: the spend and the fal balance changed). */
export function refreshSpendPanels() {
  for (const panel of spendPanels) {
    if (panel.isConnected) panel.refresh();
    else spendPanels.delete(panel); // closed with the settings dialog
  }
}

/** A field with Set / Clear buttons for an amount in US dollars. */
function amountRow(doc, { placeholder, label, noun }) {
  const input = element(doc, "input", {
    type: "text",
    inputMode: "decimal",
    autocomplete: "off",
    placeholder,
    style: "flex:1;min-width:0",
  });
  input.setAttribute("aria-label", label);
  const set = element(doc, "button", { textContent: `Set ${noun}`, className: `grok-imagine-set-${noun}` });
  const clear = element(doc, "button", { textContent: `Clear ${noun}`, className: `grok-imagine-clear-${noun}` });
  return { input, set, clear };
}

/**
 * The spend panel: totals, the fal balance and when it was read, the daily limit and the balance floor and
 * where they come from, the last few requests, and fields with Set / Clear buttons for the limit and the
 * floor. `request` as for the key panel. Refreshed when it opens and after each run (`refreshSpendPanels`).
 */
export function buildSpendPanel(doc, request, { now = () => Date.now() } = {}) {
  const root = element(doc, "div", { className: "grok-imagine-spend-panel", style: PANEL_CSS });
  const totals = element(doc, "div", { className: "grok-imagine-spend-totals", textContent: "Checking…" });
  const balance = element(doc, "div", { className: "grok-imagine-balance" });
  balance.hidden = true;
  const limit = element(doc, "div", { className: "grok-imagine-spend-limit" });
  const { input, set, clear } = amountRow(doc, {
    placeholder: "Daily limit in USD, e.g. 5",
    label: "daily limit in US dollars",
    noun: "limit",
  });
  const reload = element(doc, "button", { textContent: "Refresh", className: "grok-imagine-refresh-spend" });
  const row = element(doc, "div", { style: "display:flex;gap:6px" }, [input, set, clear, reload]);
  const floor = element(doc, "div", { className: "grok-imagine-balance-floor" });
  const floorField = amountRow(doc, {
    placeholder: "Balance floor in USD, e.g. 2",
    label: "balance floor in US dollars",
    noun: "floor",
  });
  const floorRow = element(doc, "div", { style: "display:flex;gap:6px" }, [
    floorField.input,
    floorField.set,
    floorField.clear,
  ]);
  const message = element(doc, "div", { className: "grok-imagine-spend-message" });
  const table = element(doc, "table", {
    className: "grok-imagine-spend-recent",
    style: "border-collapse:collapse;font-size:0.9em;width:100%",
  });
  root.append(totals, balance, limit, row, floor, floorRow, message, table);
  spendPanels.add(root);

  let lastBalance = {};
  const cell = (tag, text, align = "left") =>
    element(doc, tag, { textContent: text, style: `padding:1px 8px 1px 0;text-align:${align};white-space:nowrap` });

  const show = (result) => {
    if (!result.ok) {
      message.textContent = result.json?.error ?? "The Grok Imagine server routes did not answer.";
      message.style.color = PROBLEM_COLOR;
      return;
    }
    const spend = result.json ?? {};
    totals.textContent = describeTotals(spend);
    if ("fal_balance_status" in spend) {
      lastBalance = Object.fromEntries(BALANCE_FIELDS.map((name) => [name, spend[name]]));
    }
    const fal = describeBalance({ ...spend, ...lastBalance }, now()); // a POST's answer: the last reading, anew
    if (fal !== undefined) {
      balance.hidden = fal === null;
      balance.textContent = fal?.text ?? "";
      balance.title = fal?.title ?? "";
      balance.style.color = fal?.problem ? PROBLEM_COLOR : "";
    }
    limit.textContent = describeLimit(spend);
    limit.style.color = ENV_SOURCE.test(spend.limit_source ?? "") ? PROBLEM_COLOR : "";
    clear.disabled = spend.daily_limit_usd === null || spend.daily_limit_usd === undefined;
    floor.textContent = describeFloor(spend);
    floor.style.color = ENV_SOURCE.test(spend.floor_source ?? "") ? PROBLEM_COLOR : "";
    floorField.clear.disabled = spend.balance_floor_usd === null || spend.balance_floor_usd === undefined;
    const rows = recentRows(spend, now());
    table.replaceChildren();
    if (!rows.length) {
      table.append(element(doc, "caption", { textContent: "No requests recorded yet.", style: "text-align:left" }));
      return;
    }
    table.append(
      element(doc, "caption", { textContent: `Last ${rows.length} requests`, style: "text-align:left" }),
      element(doc, "tr", {}, [cell("th", "time"), cell("th", "endpoint"), cell("th", "images"), cell("th", "price", "right")]),
      ...rows.map((r) => {
        const tr = element(doc, "tr", { title: `fal request id ${r.requestId}` }, [
          cell("td", r.when),
          cell("td", r.endpoint),
          cell("td", r.images),
          cell("td", r.price, "right"),
        ]);
        return tr;
      }),
    );
  };
  const refresh = async () => {
    message.textContent = "";
    message.style.color = "";
    show(await request("GET", ROUTES.spend));
  };
  const change = async (value) => {
    const result = await request("POST", ROUTES.spendLimit, { daily_limit_usd: value });
    if (result.ok) {
      const envWins = ENV_SOURCE.test(result.json?.limit_source ?? "");
      if (value === null) message.textContent = "The daily limit set here was cleared.";
      else if (envWins) {
        message.textContent =
          `Stored ${formatUsd(value)} as the limit set here; the environment variable's limit applies while it is set.`;
      } else message.textContent = `Daily limit set to ${formatUsd(value)}.`;
      message.style.color = "";
      input.value = "";
    }
    show(result);
  };

  set.addEventListener("click", () => {
    const parsed = parseLimit(input.value);
    if (parsed.error) {
      message.textContent = parsed.error;
      message.style.color = PROBLEM_COLOR;
      return;
    }
    change(parsed.value);
  });
  clear.addEventListener("click", () => change(null));
  reload.addEventListener("click", refresh);

  const changeFloor = async (value) => {
    const result = await request("POST", ROUTES.spendFloor, { balance_floor_usd: value });
    if (result.ok) {
      const envWins = ENV_SOURCE.test(result.json?.floor_source ?? "");
      if (value === null) message.textContent = "The balance floor set here was cleared.";
      else if (envWins) {
        message.textContent =
          `Stored ${formatUsd(value)} as the floor set here; the environment variable's floor applies while it is set.`;
      } else message.textContent = `Balance floor set to ${formatUsd(value)}.`;
      message.style.color = "";
      floorField.input.value = "";
    }
    show(result);
  };
  floorField.set.addEventListener("click", () => {
    const parsed = parseLimit(floorField.input.value, "floor");
    if (parsed.error) {
      message.textContent = parsed.error;
      message.style.color = PROBLEM_COLOR;
      return;
    }
    changeFloor(parsed.value);
  });
  floorField.clear.addEventListener("click", () => changeFloor(null));

  root.refresh = refresh;
  refresh();
  return root;
}
