// The pack's server routes, and how the web extension calls them (pure: tested with vitest).

export const ROUTES = {
  pricing: "/grok_imagine/pricing",
  key: "/grok_imagine/key",
  spend: "/grok_imagine/spend",
  spendLimit: "/grok_imagine/spend/limit",
  spendFloor: "/grok_imagine/spend/floor",
};

/** What the server asks of every settings write (nodes/routes.py, write_refusal): JSON and this header. */
export const WRITE_HEADERS = Object.freeze({ "Content-Type": "application/json", "X-Grok-Imagine": "1" });

/** The fetch options for one call to the pack's routes: writes (POST, DELETE) always carry a JSON body. */
export function requestInit(method, body) {
  const verb = String(method || "GET").toUpperCase();
  if (verb === "GET" || verb === "HEAD") return { method: verb };
  return { method: verb, headers: { ...WRITE_HEADERS }, body: JSON.stringify(body ?? {}) };
}
