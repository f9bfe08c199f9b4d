"""The web extension in the real ComfyUI frontend, headless: frontend 1.27.10 (the snapshot's own) and, when
installed beside the venv, 1.58.1 in both of its renderers (classic canvas and Nodes 2.0).

Checked in the browser, as a user would see it:
- the price badge shows a price on every billed Grok node of every example workflow (drawn by the canvas, or
  an element of the Nodes 2.0 node), exactly one badge per node;
- the badge follows num_images (changed through the UI: the widget's arrow on the canvas, the + button in
  Nodes 2.0) and the references of an edit node (a link connected to image_2);
- after a run the prompt box keeps its height (the revised prompt box and the previews grow the node);
- the progress text on the node reads as written, markup characters included (1.27 renders it as HTML, 1.58
  escapes it itself);
- the fal key panel saves and removes a key through the server's write guard;
- the spend panel shows the fal balance and when it was read, asks again after a run, and sets a balance floor;
- every node's help page is served where the frontend looks for it;
- a video example: the badge of Extend follows the duration of the Grok video node feeding it (changed through
  the UI), and after a run each Grok video node plays its video on the node;
- a crafted workflow (num_images 1e300, a Prompt List of 10,000 prompts) loads, its badge reads the price of
  the widget's largest value (or of every prompt), and the tab goes on drawing frames.

Needs COMFYUI_DIR (a ComfyUI checkout) with its venv beside it (or COMFYUI_VENV), Debian's chromium, and
Playwright in that venv (see README: e2e tests); without them every test here skips. Frontend 1.58.1 is
looked for in $COMFY_HOST_HOME/frontend-1.58.1 (GROK_IMAGINE_NEW_FRONTEND overrides).

The browser part runs in ComfyUI's venv (it has Playwright): pytest runs this same file there as a script,
`python test_frontend.py URL RENDERER WORKFLOW... > results.json`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
PACK_URL = "/extensions/grok-imagine-fal/"
TEST_KEY_FROM_PANEL = "panel-key-id:panel-key-secret-0123456789abwxyz"

# ---------------------------------------------------------------------------------------------------------
# The browser driver (runs in ComfyUI's venv)

JS_BADGES = """async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const vue = document.querySelector('[data-node-id]') !== null;
  const out = [];
  for (const node of app.graph._nodes) {
    const price = node.grokImaginePrice;
    if (!price) continue;
    const marked = (node.badges ?? []).filter((b) => typeof b === 'function' && b.grokImaginePrice).length;
    app.canvas.ds.scale = 1;
    app.canvas.centerOnNode(node);
    app.canvas.setDirty(true, true);
    await sleep(vue ? 400 : 50);
    let shown = false;
    if (vue) {
      const el = document.querySelector(`[data-node-id="${node.id}"]`);
      shown = !!el && [...el.querySelectorAll('div')]
        .some((d) => d.children.length === 0 && d.textContent.trim() === price.badge.text);
    } else {
      const proto = Object.getPrototypeOf(price.badge);
      const draw = proto.draw;
      const drawn = [];
      proto.draw = function (...args) { drawn.push(this); return draw.apply(this, args); };
      try { app.canvas.draw(true, true); } finally { proto.draw = draw; }
      shown = drawn.includes(price.badge);
    }
    out.push({ id: node.id, type: node.type, label: price.badge.text, usesBadges: price.usesBadges, marked, shown });
  }
  return out;
}"""

JS_PROMPT = """(id) => {
  const node = app.graph.getNodeById(id);
  const prompt = node.widgets.find((w) => w.name === 'prompt');
  const el = prompt.element ?? prompt.inputEl;
  const vueEl = document.querySelector(`[data-node-id="${id}"] textarea`);
  return { textarea: (vueEl ?? el)?.offsetHeight ?? null, slot: prompt.computedHeight ?? null, node: [...node.size],
           widgets: node.widgets.map((w) => w.name) };
}"""

# A prompt whose revised prompt (the fake's "Revised: <prompt>") ends up in the node's last progress text
MARKUP_PROMPT = "A <b>bold</b> &amp; brave lighthouse & co"
# Records every rendering of that text (1.58 removes the progress text when the prompt ends)
JS_WATCH_PROGRESS_TEXT = """() => {
  const seen = window.grokProgressTexts = [];
  const look = () => {
    for (const el of document.querySelectorAll('span, p')) {  // p: the Nodes 2.0 renderer's text
      if (!el.textContent.includes('Revised prompt: Revised:') || el.querySelector('span, p')) continue;
      const shown = { text: el.innerText, tags: [...el.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()) };
      if (!seen.some((s) => s.text === shown.text)) seen.push(shown);
    }
  };
  new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""

# Every video element on the page: what it plays, whether it is shown and has loaded, and (Nodes 2.0) its node
JS_VIDEOS = """() => [...document.querySelectorAll('video')].map((v) => {
  const src = new URL(v.src, location.href).searchParams;
  return { filename: src.get('filename'), subfolder: src.get('subfolder'), type: src.get('type'),
           shown: v.offsetWidth > 0 && v.offsetHeight > 0, loaded: v.readyState >= 1, width: v.videoWidth,
           node: v.closest('[data-node-id]')?.dataset.nodeId ?? null };
})"""

BALANCE = "document.querySelector('.grok-imagine-balance')"
JS_RUN = """() => new Promise((resolve) => {
    for (const n of app.graph._nodes) {
        const seed = n.widgets?.find((w) => w.name === 'seed');
        if (seed) seed.value = Math.floor(Math.random() * 1e12);
    }
    app.api.addEventListener('execution_success', resolve, { once: true });
    app.queuePrompt(0, 1);
})"""
# Loads a workflow without waiting for it (a tab that freezes must not hang the driver), then, from the first
# frame after the load, counts the frames the tab draws in 5 s with a billed node in view (the frontend's own
# work on a long text delays the next few: 1.27.10 takes seconds over a 10,000-line box, with or without this
# pack); `window.__grokCrafted` holds what it saw.
JS_LOAD_CRAFTED = """(workflow) => {
  window.__grokCrafted = null;
  setTimeout(async () => {
    await app.loadGraphData(workflow, true, true, 'e2e');
    const node = app.graph._nodes.find((n) => n.grokImaginePrice);
    app.canvas.ds.scale = 1;
    app.canvas.centerOnNode(node);
    app.canvas.setDirty(true, true);
    const started = performance.now();
    for (let i = 0; i < 100; i++) node.grokImaginePrice.refresh();  // what 100 frames of the canvas ask
    const refreshMs = performance.now() - started;
    let frames = 0;
    let until = null;
    const tick = (now) => {
      until ??= now + 5000;
      if (now < until) {
        frames++;
        return requestAnimationFrame(tick);
      }
      const el = document.querySelector(`[data-node-id="${node.id}"]`);
      window.__grokCrafted = {
        frames, refreshMs, label: node.grokImaginePrice.badge.text, dom: el ? el.innerText : null,
        numImages: node.widgets.find((w) => w.name === 'num_images').value,
      };
    };
    requestAnimationFrame(tick);
  }, 0);
}"""
LIST_PROMPTS = 10_000

STATUS = "document.querySelector('.grok-imagine-key-status')"
REMOVE = "document.querySelector('.grok-imagine-remove-key')"
KEY_STATUS = "async () => JSON.stringify(await (await fetch('/grok_imagine/key')).json())"


def _post(url: str, path: str, body: Any) -> None:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()  # noqa: S310 (loopback)


def crafted_workflows(workflows: list[str]) -> dict[str, Any]:
    """Examples as a crafted or mistyped file could have them: num_images 1e300; a Prompt List of 10,000."""
    def example(name: str) -> dict[str, Any]:
        return json.loads(Path(next(w for w in workflows if w.endswith(name))).read_text())

    huge_count = example("grok_imagine_text_to_image.json")
    next(n for n in huge_count["nodes"] if n["type"] == "FalGrokImagineImage")["widgets_values"][1] = 1e300
    crafted = {"num_images_1e300": huge_count}
    if any(w.endswith("grok_imagine_prompt_list_batch.json") for w in workflows):
        long_list = example("grok_imagine_prompt_list_batch.json")
        next(n for n in long_list["nodes"] if n["type"] == "FalGrokImaginePromptList")["widgets_values"][0] = "\n".join(
            f"A red fox in fresh snow, take {i}" for i in range(LIST_PROMPTS))
        crafted["prompt_list_10000"] = long_list
    return crafted


def look_at_crafted(page: Any, workflow: dict[str, Any]) -> dict[str, Any]:
    """What the tab shows after loading `workflow`, or that it froze (no answer within 60 s)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate(JS_LOAD_CRAFTED, workflow)
    try:
        page.wait_for_function("() => window.__grokCrafted !== null", timeout=60000)
    except PlaywrightTimeout:
        return {"froze": True}
    return {"froze": False, **page.evaluate("() => window.__grokCrafted")}


def click_increment(page: Any, renderer: str, node_id: int, widget: str) -> None:
    """Raise a number widget by one step as a user does: its + button in Nodes 2.0, its right arrow on the canvas."""
    if renderer == "nodes2":
        page.locator(f'[data-node-id="{node_id}"] [aria-label="{widget}"] button[aria-label="Increment"]').click()
    else:
        x, y = page.evaluate(f"""() => {{
            const node = app.graph.getNodeById({node_id});
            app.canvas.ds.scale = 1; app.canvas.centerOnNode(node); app.canvas.draw(true, true);
            const w = node.widgets.find((w) => w.name === '{widget}');
            const {{ offset, scale }} = app.canvas.ds;  // graph to screen, as the canvas draws it
            const rect = app.canvas.canvas.getBoundingClientRect();
            return [rect.left + (node.pos[0] + node.size[0] - 22 + offset[0]) * scale,
                    rect.top + (node.pos[1] + w.y + 10 + offset[1]) * scale];
        }}""")
        page.mouse.click(x, y)
    page.wait_for_timeout(400)


def drive(url: str, renderer: str, workflows: list[str]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    _post(url, "/settings/Comfy.TutorialCompleted", True)
    _post(url, "/settings/Comfy.VueNodes.Enabled", renderer == "nodes2")
    results: dict[str, Any] = {"renderer": renderer, "errors": []}
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_FLAGS, viewport={"width": 1600, "height": 1000})
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.on("console", lambda m: results["errors"].append(m.text) if m.type == "error"
                and PACK_URL in (m.location or {}).get("url", "") else None)
        page.on("pageerror", lambda e: results["errors"].append(str(e)) if PACK_URL in (e.stack or "") else None)
        page.goto(url + "/", wait_until="load", timeout=60000)
        page.wait_for_function("() => window.app && window.app.graph && window.app.canvas && window.LiteGraph",
                               timeout=60000)
        page.wait_for_timeout(1000)
        results["frontend"] = page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ || null")
        results["vue_nodes"] = renderer == "nodes2"

        def load(path: str) -> None:
            page.evaluate("async (wf) => { await window.app.loadGraphData(wf, true, true, 'e2e'); }",
                          json.loads(Path(path).read_text()))
            page.wait_for_timeout(800)

        # 1. a badge with a price on every billed node of every example workflow
        results["badges"] = {}
        for path in workflows:
            load(path)
            results["badges"][Path(path).stem] = page.evaluate(JS_BADGES)
        results["vue_dom"] = page.evaluate("() => document.querySelector('[data-node-id]') !== null")

        # 2. the badge follows num_images, changed through the UI
        load(next(w for w in workflows if w.endswith("grok_imagine_text_to_image.json")))
        node_id = page.evaluate("() => app.graph._nodes.find((n) => n.grokImaginePrice).id")
        label = f"() => app.graph.getNodeById({node_id}).grokImaginePrice.badge.text"
        before = page.evaluate(label)
        if renderer == "nodes2":
            page.locator(f'[data-node-id="{node_id}"] [aria-label="num_images"] button[aria-label="Increment"]').click()
            page.wait_for_timeout(400)
            dom = page.locator(f'[data-node-id="{node_id}"]').inner_text()
        else:  # the widget's right arrow on the canvas
            x, y = page.evaluate(f"""() => {{
                const node = app.graph.getNodeById({node_id});
                app.canvas.ds.scale = 1; app.canvas.centerOnNode(node); app.canvas.draw(true, true);
                const w = node.widgets.find((w) => w.name === 'num_images');
                const {{ offset, scale }} = app.canvas.ds;  // graph to screen, as the canvas draws it
                const rect = app.canvas.canvas.getBoundingClientRect();
                return [rect.left + (node.pos[0] + node.size[0] - 22 + offset[0]) * scale,
                        rect.top + (node.pos[1] + w.y + 10 + offset[1]) * scale];
            }}""")
            page.mouse.click(x, y)
            page.wait_for_timeout(400)
            dom = None
        results["num_images"] = {
            "before": before, "after": page.evaluate(label), "dom": dom,
            "value": page.evaluate(f"() => app.graph.getNodeById({node_id}).widgets"
                                   ".find((w) => w.name === 'num_images').value"),
        }

        # 3. the badge of an edit node follows its references
        load(next(w for w in workflows if w.endswith("grok_imagine_generate_then_edit.json")))
        results["references"] = page.evaluate("""async () => {
            const edit = app.graph._nodes.find((n) => n.type === 'FalGrokImagineEdit');
            const source = app.graph._nodes.find((n) => n.type === 'FalGrokImagineImage');
            const before = edit.grokImaginePrice.badge.text;
            source.connect(0, edit, edit.inputs.findIndex((i) => i.name === 'image_2'));
            await new Promise((r) => setTimeout(r, 400));
            const el = document.querySelector(`[data-node-id="${edit.id}"]`);
            return { before, after: edit.grokImaginePrice.badge.text, dom: el ? el.innerText : null };
        }""")

        # 3b. the badge of a node fed by a prompt list follows the list, as the user types into it
        batch = [w for w in workflows if w.endswith("grok_imagine_prompt_list_batch.json")]
        if batch:
            load(batch[0])
            results["prompt_list"] = page.evaluate("""async () => {
                const list = app.graph._nodes.find((n) => n.type === 'FalGrokImaginePromptList');
                const grok = app.graph._nodes.find((n) => n.grokImaginePrice);
                const before = grok.grokImaginePrice.badge.text;
                const widget = list.widgets.find((w) => w.name === 'prompts');
                const box = document.querySelector(`[data-node-id="${list.id}"] textarea`) ?? widget.element;
                box.value += '\\nA fifth prompt';
                box.dispatchEvent(new Event('input', { bubbles: true }));
                await new Promise((r) => setTimeout(r, 400));
                const el = document.querySelector(`[data-node-id="${grok.id}"]`);
                return { before, after: grok.grokImaginePrice.badge.text, dom: el ? el.innerText : null };
            }""")

        # 4. the prompt box keeps its height after a run, and the progress text reads as written
        load(next(w for w in workflows if w.endswith("grok_imagine_text_to_image.json")))
        node_id = page.evaluate("() => app.graph._nodes.find((n) => n.grokImaginePrice).id")
        page.evaluate(f"() => {{ const n = app.graph.getNodeById({node_id}); app.canvas.ds.scale = 1; "
                      "app.canvas.centerOnNode(n); app.canvas.setDirty(true, true); "
                      "n.widgets.find((w) => w.name === 'prompt').value = " + json.dumps(MARKUP_PROMPT) + "; }")
        page.wait_for_timeout(300)
        prompt_before = page.evaluate(JS_PROMPT, node_id)
        page.evaluate(JS_WATCH_PROGRESS_TEXT)
        page.evaluate(JS_RUN)
        page.wait_for_function(f"() => app.graph.getNodeById({node_id}).widgets.some((w) => w.name === "
                               "'$$grok-revised-prompt')", timeout=30000)
        page.wait_for_timeout(1500)
        page.evaluate("() => app.canvas.setDirty(true, true)")
        page.wait_for_timeout(300)
        results["prompt"] = {"before": prompt_before, "after": page.evaluate(JS_PROMPT, node_id)}
        results["progress_texts"] = page.evaluate("() => window.grokProgressTexts")

        # 5. the fal key panel saves and removes a key through the write guard
        results["guard_without_header"] = page.evaluate("""async () => (await fetch('/grok_imagine/key', {
            method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"key": "x:y"}' })).status""")
        page.evaluate("() => app.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
        page.wait_for_timeout(1000)
        page.evaluate("""() => [...document.querySelectorAll('.p-dialog *, [role=dialog] *')]
            .find((e) => e.children.length === 0 && e.textContent.trim() === 'Grok Imagine (fal)')?.click()""")
        panel = page.locator(".grok-imagine-key-panel")
        panel.wait_for(timeout=10000)
        status = panel.locator(".grok-imagine-key-status")
        page.wait_for_function(f"() => !{STATUS}.textContent.includes('Checking')")
        key = {"initial": status.inner_text()}
        panel.locator("input").fill(TEST_KEY_FROM_PANEL)
        panel.locator(".grok-imagine-save-key").click()
        page.wait_for_function(f"() => {STATUS}.textContent.includes('stored key') || !{REMOVE}.disabled",
                               timeout=10000)
        key["saved"] = status.inner_text()
        key["after_save"] = json.loads(page.evaluate(KEY_STATUS))
        panel.locator(".grok-imagine-remove-key").click()
        page.wait_for_function(f"() => {REMOVE}.disabled", timeout=10000)
        key["removed"] = status.inner_text()
        key["after_remove"] = json.loads(page.evaluate(KEY_STATUS))
        key["page_holds_key"] = TEST_KEY_FROM_PANEL.split(":")[1] in page.content()
        results["key"] = key
        spend = page.locator(".grok-imagine-spend-panel")
        page.wait_for_function("() => document.querySelector('.grok-imagine-spend-totals')?.textContent"
                               ".startsWith('Today')", timeout=10000)
        results["spend_panel"] = spend.inner_text()

        # 6. the spend panel shows the fal balance, asks again after a run (still open), and sets a floor
        page.wait_for_function(f"() => {BALANCE}?.textContent.startsWith('fal balance $')", timeout=10000)
        balance = {"before": page.evaluate(f"() => {BALANCE}.textContent")}
        page.evaluate(JS_RUN)
        page.wait_for_function(f"() => {BALANCE}.textContent !== {json.dumps(balance['before'])}", timeout=15000)
        balance["after_run"] = page.evaluate(f"() => {BALANCE}.textContent")
        spend.locator("input[aria-label='balance floor in US dollars']").fill("1")
        spend.locator(".grok-imagine-set-floor").click()
        page.wait_for_function("() => document.querySelector('.grok-imagine-balance-floor').textContent"
                               ".startsWith('Balance floor $1.00, set here')", timeout=10000)
        balance["floor_set"] = spend.inner_text()
        spend.locator(".grok-imagine-clear-floor").click()
        page.wait_for_function("() => document.querySelector('.grok-imagine-balance-floor').textContent"
                               ".startsWith('No balance floor')", timeout=10000)
        results["balance"] = balance
        page.keyboard.press("Escape")  # the settings dialog
        # 8. videos: the badge of an Extend follows the duration of the Grok video feeding it, changed through the
        # UI; after a run each Grok video node plays its video, as Save Video's preview does
        videos = [w for w in workflows if w.endswith("grok_imagine_text_to_video_then_extend.json")]
        if videos:
            load(videos[0])
            ids = page.evaluate("""() => Object.fromEntries(app.graph._nodes.map((n) => [n.type, n.id]))""")
            made, extend = ids["FalGrokImagineVideo"], ids["FalGrokImagineVideoExtend"]
            extend_label = f"() => app.graph.getNodeById({extend}).grokImaginePrice.badge.text"
            seen = {"before": page.evaluate(extend_label)}
            click_increment(page, renderer, made, "duration")
            seen["after"] = page.evaluate(extend_label)
            seen["duration"] = page.evaluate(f"() => app.graph.getNodeById({made}).widgets"
                                             ".find((w) => w.name === 'duration').value")
            if renderer == "nodes2":
                seen["dom"] = page.locator(f'[data-node-id="{extend}"]').inner_text()
            page.evaluate(JS_RUN)
            page.wait_for_timeout(1500)
            seen["players"] = page.evaluate(JS_VIDEOS)
            results["videos"] = seen

        # 7. a crafted workflow loads and the tab goes on (last: a frozen tab would spoil what follows)
        results["crafted"] = {}
        for name, workflow in crafted_workflows(workflows).items():
            results["crafted"][name] = seen = look_at_crafted(page, workflow)
            if seen["froze"]:
                break
        ctx.close()
    return results


if __name__ == "__main__":
    print(json.dumps(drive(sys.argv[1], sys.argv[2], sys.argv[3:])))
    sys.exit(0)

# ---------------------------------------------------------------------------------------------------------
# The tests (pytest, the project's Python)

import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402

import pytest  # noqa: E402
from comfy_host import PACK_FOLDER, PACK_ROOT, pack_env, start_comfy  # noqa: E402
from comfy_like import TEST_KEY  # noqa: E402
from fake_fal import FakeFal  # noqa: E402

# the first test of a frontend waits for ComfyUI and the browser (~50 s each)
pytestmark = pytest.mark.timeout(400)
FAL = {"balance_usd": 7.5, "charge_balance": True}  # the fake fal of this module (tests/e2e/conftest.py)
EXAMPLES = sorted((PACK_ROOT / "example_workflows").glob("*.json"))
NEW_FRONTEND = Path(os.environ.get("GROK_IMAGINE_NEW_FRONTEND") or Path(
    os.environ.get("COMFY_HOST_HOME", Path.home() / "comfy-host")) / "frontend-1.58.1" / "comfyui_frontend_package"
                    / "static")
FRONTENDS = {"1.27.10": (None, ["classic"]), "1.58.1": (NEW_FRONTEND, ["classic", "nodes2"])}
NODES = ["FalGrokImagineImage", "FalGrokImagineEdit", "FalGrokImagineResult", "FalGrokImagine2Image",
         "FalGrokImagine2Edit", "FalGrokImaginePromptList", "FalGrokImagineVideo", "FalGrokImagineReferenceVideo",
         "FalGrokImagineVideoEdit", "FalGrokImagineVideoExtend", "FalGrokImagineVideoResult"]


def browser_ready(python: Path) -> str | None:
    """Why the browser part cannot run here (with ComfyUI's `python`), or None."""
    if not (shutil.which("chromium") or Path(CHROMIUM).exists()):
        return "needs Debian's chromium"
    probe = subprocess.run([str(python), "-c", "import playwright"], capture_output=True)  # noqa: S603
    return None if probe.returncode == 0 else "needs Playwright in ComfyUI's venv"


def look_in_the_browser(comfyui: tuple[Path, Path], version: str, fal: FakeFal, base: Path) -> dict[str, Any]:
    """Start ComfyUI on one frontend (the venv's, or another one), let the browser look at it in each renderer,
    stop ComfyUI."""
    root, renderers = FRONTENDS[version]
    server = start_comfy(*comfyui, base, pack_env(fal.url, base, TEST_KEY), front_end_root=root)
    try:
        seen: dict[str, Any] = {"version": version, "pricing": server.get("/grok_imagine/pricing"), "help": {}}
        for node in NODES:  # frontend 1.27 and 1.58 both fetch /extensions/<pack>/docs/<node>.md
            url = f"{server.url}/extensions/{PACK_FOLDER}/docs/{node}.md"
            with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (loopback)
                seen["help"][node] = (server.get(f"/object_info/{node}")[node]["display_name"], answer.read().decode())
        for renderer in renderers:
            started = time.monotonic()
            result = subprocess.run(  # noqa: S603 (our own argv)
                [str(comfyui[1]), __file__, server.url, renderer, *map(str, EXAMPLES)],
                capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
            seen[renderer] = json.loads(result.stdout.strip().splitlines()[-1])
            seen[renderer]["seconds"] = round(time.monotonic() - started, 1)
    finally:
        server.stop()
    log = server.log()
    assert TEST_KEY.split(":")[1] not in log and TEST_KEY_FROM_PANEL.split(":")[1] not in log
    return seen


_SEEN: dict[str, dict[str, Any] | BaseException] = {}


@pytest.fixture(params=list(FRONTENDS))
def frontend(request: pytest.FixtureRequest, comfyui: tuple[Path, Path], fal: FakeFal,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the browser saw on one frontend, in each of its renderers: looked at once per frontend, whatever
    order the tests run in (ComfyUI is stopped again right after)."""
    root, _ = FRONTENDS[request.param]
    if root is not None and not (root / "index.html").is_file():
        pytest.skip(f"frontend {request.param} is not installed at {root}")
    reason = browser_ready(comfyui[1])
    if reason:
        pytest.skip(reason)
    if request.param not in _SEEN:
        try:
            _SEEN[request.param] = look_in_the_browser(comfyui, request.param, fal,
                                                       tmp_path_factory.mktemp(f"comfy-frontend-{request.param}"))
        except BaseException as exc:  # a failed look fails every test of that frontend, without a second try
            _SEEN[request.param] = exc
            raise
    seen = _SEEN[request.param]
    if isinstance(seen, BaseException):
        pytest.fail(f"looking at frontend {request.param} failed: {seen!r}")
    return seen


def renderers(frontend: dict[str, Any]) -> list[dict[str, Any]]:
    return [frontend[r] for r in FRONTENDS[frontend["version"]][1]]


def test_the_right_frontend_and_renderer_were_checked(frontend: dict[str, Any]) -> None:
    for seen in renderers(frontend):
        assert seen["frontend"] == frontend["version"]
        assert seen["vue_dom"] == seen["vue_nodes"], "the renderer asked for is not the one that drew the nodes"
        assert not seen["errors"], seen["errors"]


def test_every_billed_node_of_every_example_shows_exactly_one_price_badge(frontend: dict[str, Any]) -> None:
    billed = set(frontend["pricing"]["nodes"])
    for seen in renderers(frontend):
        for workflow, nodes in seen["badges"].items():
            expected = [n["type"] for n in json.loads((PACK_ROOT / "example_workflows" / f"{workflow}.json")
                                                      .read_text())["nodes"] if n["type"] in billed]
            assert sorted(n["type"] for n in nodes) == sorted(expected), (workflow, nodes)
            for node in nodes:
                assert node["label"].startswith("$") and " · " in node["label"], node
                assert node["usesBadges"] and node["marked"] == 1, node  # node.badges, never a second badge
                assert node["shown"], (seen["renderer"], workflow, node)
        print(f"{frontend['version']} {seen['renderer']}: "
              f"{sum(n['shown'] for nodes in seen['badges'].values() for n in nodes)} badges shown")


def test_the_badge_follows_num_images_changed_in_the_ui(frontend: dict[str, Any]) -> None:
    for seen in renderers(frontend):
        change = seen["num_images"]
        assert change["value"] == 2, (seen["renderer"], change)
        assert (change["before"], change["after"]) == ("$0.02 · 1 image", "$0.04 · 2 images"), change
        if seen["vue_nodes"]:
            assert "$0.04 · 2 images" in change["dom"]


def test_the_badge_of_an_edit_follows_its_references(frontend: dict[str, Any]) -> None:
    for seen in renderers(frontend):
        refs = seen["references"]
        assert (refs["before"], refs["after"]) == ("$0.042–0.046 · 2 images", "$0.044–0.046 · 2 images"), refs
        if seen["vue_nodes"]:
            assert "$0.044–0.046 · 2 images" in refs["dom"]


def test_the_badge_of_a_node_fed_by_a_prompt_list_follows_the_list(frontend: dict[str, Any]) -> None:
    for seen in renderers(frontend):
        if "prompt_list" not in seen:
            pytest.skip("no example workflow grok_imagine_prompt_list_batch.json")
        change = seen["prompt_list"]
        assert (change["before"], change["after"]) == ("$0.08 · 4 prompts × 1 image", "$0.10 · 5 prompts × 1 image")
        if seen["vue_nodes"]:
            assert "$0.10 · 5 prompts × 1 image" in change["dom"]


def test_the_badge_of_an_extend_follows_the_grok_video_feeding_it(frontend: dict[str, Any]) -> None:
    for seen in renderers(frontend):
        if "videos" not in seen:
            pytest.skip("no example workflow grok_imagine_text_to_video_then_extend.json")
        videos = seen["videos"]
        assert videos["duration"] == 7, videos  # the input grew from 6 s to 7 s: 6 s more at 720p, 7 s of input
        assert (videos["before"], videos["after"]) == ("$0.48 · 6 s more at 720p", "$0.49 · 6 s more at 720p")
        if seen["vue_nodes"]:
            assert "$0.49 · 6 s more at 720p" in videos["dom"]


def test_each_grok_video_node_plays_its_video_after_a_run(frontend: dict[str, Any]) -> None:
    for seen in renderers(frontend):
        if "videos" not in seen:
            pytest.skip("no example workflow grok_imagine_text_to_video_then_extend.json")
        players = [p for p in seen["videos"]["players"] if p["subfolder"] == "grok_imagine"]
        print(f"{frontend['version']} {seen['renderer']}: video players {seen['videos']['players']}")
        assert len(players) == 2, seen["videos"]["players"]  # the Video node's and the Extend node's
        for player in players:
            assert player["type"] == "temp" and player["filename"].endswith(".mp4"), player
            assert player["shown"] and player["loaded"] and player["width"] == 1280, player
        if seen["vue_nodes"]:  # each inside its own node's element
            assert sorted(p["node"] for p in players) == ["1", "2"], players


def test_the_prompt_box_keeps_its_height_after_a_run(frontend: dict[str, Any]) -> None:
    for seen in renderers(frontend):
        before, after = seen["prompt"]["before"], seen["prompt"]["after"]
        print(f"{frontend['version']} {seen['renderer']}: prompt textarea {before['textarea']} px before a run, "
              f"{after['textarea']} px after; node {before['node']} -> {after['node']}")
        assert "$$grok-revised-prompt" in after["widgets"]
        assert after["textarea"] >= before["textarea"] - 2, (seen["renderer"], before, after)
        if not seen["vue_nodes"]:
            assert before["textarea"] > 100 and after["node"][1] > before["node"][1], (before, after)


def test_the_progress_text_reads_as_written_markup_characters_included(frontend: dict[str, Any]) -> None:
    for seen in renderers(frontend):
        texts = seen["progress_texts"]
        print(f"{frontend['version']} {seen['renderer']}: progress text {texts}")
        assert texts, (seen["renderer"], "the node never showed its last progress text")
        for shown in texts:  # the word joiners the pack adds are invisible
            assert f"Revised prompt: Revised: {MARKUP_PROMPT}" in shown["text"].replace("\u2060", ""), shown
            assert set(shown["tags"]) <= {"br"}, shown  # line breaks only: nothing of the prompt became markup


def test_the_key_panel_saves_and_removes_a_key_through_the_write_guard(frontend: dict[str, Any]) -> None:
    for seen in renderers(frontend):
        key = seen["key"]
        assert seen["guard_without_header"] == 403, "a write without X-Grok-Imagine must be refused"
        assert "…cdef" in key["initial"] and "FAL_KEY" in key["initial"]
        assert key["after_save"]["key_file_present"] is True, key
        assert "stored key exists too" in key["saved"]
        assert key["after_remove"]["key_file_present"] is False, key
        assert "stored key" not in key["removed"]
        assert not key["page_holds_key"]
        assert seen["spend_panel"].startswith("Today $") and "No daily limit is set." in seen["spend_panel"]


def test_the_spend_panel_shows_the_fal_balance_and_asks_again_after_a_run(frontend: dict[str, Any]) -> None:
    for seen in renderers(frontend):
        balance = seen["balance"]
        assert re.fullmatch(r"fal balance \$\d+\.\d\d \(read at \d\d:\d\d\)\.", balance["before"]), balance
        assert "fal balance $" in seen["spend_panel"] and "No balance floor is set" in seen["spend_panel"]
        paid = float(balance["before"].split("$")[1].split(" ")[0]) - float(balance["after_run"].split("$")[1]
                                                                             .split(" ")[0])
        assert round(paid, 6) == 0.02, balance  # one image, paid from the balance, seen without reopening
        assert "Balance floor $1.00, set here" in balance["floor_set"] and "above the floor" in balance["floor_set"]


def test_every_node_has_its_help_page_where_the_frontend_looks(frontend: dict[str, Any]) -> None:
    for node, (display_name, page) in frontend["help"].items():
        assert page.startswith(f"# {display_name}\n"), node
        assert "## Inputs" in page and "## Price" in page, node


def test_the_vitest_price_fixture_is_the_served_price_table(frontend: dict[str, Any]) -> None:
    fixture = json.loads((PACK_ROOT / "tests" / "js" / "fixtures" / "pricing.json").read_text())
    assert frontend["pricing"] == fixture, "update tests/js/fixtures/pricing.json (and the labels tested with it)"


def test_a_crafted_workflow_loads_priced_within_range_and_the_tab_goes_on(frontend: dict[str, Any]) -> None:
    for seen in renderers(frontend):
        crafted = seen["crafted"]
        huge = crafted["num_images_1e300"]
        assert not huge["froze"], f"{frontend['version']} {seen['renderer']}: the tab froze on num_images 1e300"
        assert huge["label"] == "$0.32 · 16 images · 4 requests", huge  # the widget's largest value, 16
        assert huge["frames"] >= 5, huge
        if seen["vue_nodes"]:
            assert huge["label"] in huge["dom"], huge
        long_list = crafted.get("prompt_list_10000", {})
        if long_list:
            assert not long_list["froze"] and long_list["frames"] >= 5, long_list
            assert long_list["label"] == "$200.00 · 10000 prompts × 1 image", long_list
        print(f"{frontend['version']} {seen['renderer']}: num_images kept as {huge['numImages']!r}; frames in 5 s "
              f"after loading: {huge['frames']} (1e300), {long_list.get('frames')} (10,000 prompts); 100 label "
              f"refreshes: {huge['refreshMs']:.1f} ms (1e300), {long_list.get('refreshMs', 0):.1f} ms (10,000 prompts)")
