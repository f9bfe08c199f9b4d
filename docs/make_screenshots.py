"""Make the README screenshots and the example workflows' thumbnails in the real ComfyUI frontend.

Run with the python of ComfyUI's venv (it has playwright), Debian's chromium installed:

    COMFYUI_DIR=~/comfy-host/ComfyUI ~/comfy-host/venv/bin/python docs/make_screenshots.py

It starts the project's fake fal server (slow enough to catch the node mid-run) and ComfyUI with the pack
in a temporary base directory, on the frontend users run today (1.58.1 from $COMFY_HOST_HOME/frontend-1.58.1,
or GROK_IMAGINE_NEW_FRONTEND; the venv's own frontend when that is missing), and writes, from the classic
canvas:
  docs/node_during_run.png, docs/node_after_run.png   the text-to-image example while fal runs it, and after
  docs/key_setting.png, docs/spend_setting.png        Settings > Grok Imagine (fal): the key, the spend
  example_workflows/<name>.jpg                        every example workflow after a run (one per .json)
and from Nodes 2.0 (frontend 1.58.1 only):
  docs/badge_nodes2.png                               the four billed nodes with their price badges

`--examples NAME...` makes only those examples' thumbnails (NAME: the workflow's file name without .json), and
nothing else.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

from comfy_host import ComfyServer, comfy_paths, pack_env, start_comfy  # noqa: E402
from comfy_like import TEST_KEY  # noqa: E402
from fake_fal import FakeFal  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1600, "height": 1000}
NEW_FRONTEND = Path(os.environ.get("GROK_IMAGINE_NEW_FRONTEND") or Path(
    os.environ.get("COMFY_HOST_HOME", Path.home() / "comfy-host")) / "frontend-1.58.1" / "comfyui_frontend_package"
                    / "static")

# Fit the graph into the canvas below the frontend's floating bars; answers the graph's box on screen.
JS_FIT = """(top) => {
  const nodes = app.graph._nodes;
  const title = LiteGraph.NODE_TITLE_HEIGHT ?? 30;
  const box = [Infinity, Infinity, -Infinity, -Infinity];
  for (const n of nodes) {
    box[0] = Math.min(box[0], n.pos[0]); box[1] = Math.min(box[1], n.pos[1] - title - 28);
    box[2] = Math.max(box[2], n.pos[0] + n.size[0]); box[3] = Math.max(box[3], n.pos[1] + n.size[1]);
  }
  const rect = app.canvas.canvas.getBoundingClientRect();
  const [w, h] = [box[2] - box[0], box[3] - box[1]];
  const scale = Math.min(1, (rect.width - 60) / w, (rect.height - top - 30) / h);
  const ds = app.canvas.ds;
  ds.scale = scale;
  ds.offset[0] = (30 + (rect.width - 60 - w * scale) / 2) / scale - box[0];
  ds.offset[1] = top / scale - box[1];
  app.canvas.setDirty(true, true);
  const screen = (x, y) => [rect.left + (x + ds.offset[0]) * scale, rect.top + (y + ds.offset[1]) * scale];
  const [x0, y0] = screen(box[0], box[1]);
  const [x1, y1] = screen(box[2], box[3]);
  return { x: Math.max(0, x0 - 14), y: Math.max(0, y0 - 10), width: x1 - x0 + 28, height: y1 - y0 + 24 };
}"""

# Nodes 2.0 nodes are elements taller than their canvas size: fit what is on screen, answer its box.
JS_FIT_NODES2 = """async () => {
  const box = () => {
    const rects = [...document.querySelectorAll('[data-node-id]')].map((e) => e.getBoundingClientRect());
    return [Math.min(...rects.map((r) => r.left)), Math.min(...rects.map((r) => r.top)),
            Math.max(...rects.map((r) => r.right)), Math.max(...rects.map((r) => r.bottom))];
  };
  const rect = app.canvas.canvas.getBoundingClientRect();
  let [x0, y0, x1, y1] = box();
  const ds = app.canvas.ds;
  const shrink = Math.min(1, (rect.height - 130) / (y1 - y0), (rect.width - 160) / (x1 - x0));
  if (shrink < 1) {
    ds.scale *= shrink;
    app.canvas.setDirty(true, true);
    await new Promise((r) => setTimeout(r, 800));
    [x0, y0, x1, y1] = box();
  }
  const bar = document.querySelector('.side-tool-bar-container, nav')?.getBoundingClientRect().right ?? 0;
  ds.offset[0] += (Math.max(rect.left, bar) + 40 - x0) / ds.scale;  // right of the side bar
  ds.offset[1] += (rect.top + 100 - y0) / ds.scale;  // below the floating graph bar
  app.canvas.setDirty(true, true);
  await new Promise((r) => setTimeout(r, 800));
  [x0, y0, x1, y1] = box();
  return { x: x0 - 14, y: y0 - 14, width: x1 - x0 + 28, height: y1 - y0 + 28 };
}"""

JS_NEW_SEEDS = """() => {
  for (const n of app.graph._nodes) {
    const seed = n.widgets?.find((w) => w.name === 'seed');
    if (seed) seed.value = Math.floor(Math.random() * 1e12);
  }
}"""

# The four billed nodes, for the Nodes 2.0 picture: a range for an edit whose references are known only at
# run time, an exact price once both extra references are connected, requests beyond four images.
JS_BADGE_GRAPH = """async () => {
  app.graph.clear();
  const add = (type, pos, values) => {
    const node = LiteGraph.createNode(type);
    node.pos = pos;
    app.graph.add(node);
    for (const [name, value] of Object.entries(values)) {
      const widget = node.widgets.find((w) => w.name === name);
      widget.value = value;
      widget.callback?.(value);
    }
    return node;
  };
  const image = add('FalGrokImagineImage', [40, 60], { prompt: 'A red fox curled up in fresh snow', num_images: 4 });
  const image2 = add('FalGrokImagine2Image', [40, 700], { prompt: 'A lighthouse at dusk', num_images: 6, quality: 'low',
                                                         resolution: '2k' });
  const edit = add('FalGrokImagineEdit', [520, 60], { prompt: 'Make it a winter night', num_images: 2 });
  const edit2 = add('FalGrokImagine2Edit', [520, 700], { prompt: 'Combine the three into one scene', num_images: 1 });
  image.connect(0, edit, 0);
  image.connect(0, edit2, 0);
  image2.connect(0, edit2, edit2.inputs.findIndex((i) => i.name === 'image_2'));
  edit.connect(0, edit2, edit2.inputs.findIndex((i) => i.name === 'image_3'));
  await new Promise((r) => setTimeout(r, 500));
  return [image, image2, edit, edit2].map((n) => n.grokImaginePrice.badge.text);
}"""


def thumbnail(png: bytes, target: Path, width: int = 640) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.thumbnail((width, width))
    image.save(target, "JPEG", quality=82, optimize=True)


def start_comfy_on(base: Path, env: dict[str, str], front_end_root: Path | None) -> ComfyServer:
    """ComfyUI with the pack linked into `base`, on the given frontend (tests/e2e/comfy_host.py)."""
    paths = comfy_paths()
    if paths is None:
        sys.exit("set COMFYUI_DIR to a ComfyUI checkout with its venv beside it")
    return start_comfy(*paths, base, env, front_end_root=front_end_root)


def open_page(browser, comfy: ComfyServer, vue_nodes: bool) -> Page:  # noqa: ANN001 (playwright's Browser)
    comfy.post("/settings/Comfy.VueNodes.Enabled", vue_nodes)
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(comfy.url + "/", wait_until="load")
    page.wait_for_function("() => window.app && window.app.graph && window.app.canvas && window.LiteGraph")
    page.wait_for_timeout(1500)
    return page


def wait_idle(comfy: ComfyServer, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = comfy.get("/queue")
        if not busy["queue_running"] and not busy["queue_pending"]:
            return
        time.sleep(0.25)
    raise TimeoutError("the example did not finish")


def shoot_examples(page: Page, comfy: ComfyServer, fal: FakeFal, top: int, only: list[str] | None = None) -> None:
    for workflow in sorted((ROOT / "example_workflows").glob("*.json")):
        if only and workflow.stem not in only:
            continue
        # a fresh page for each: the frontend keeps a node's last outputs by node id across loaded workflows
        page.goto(comfy.url + "/", wait_until="load")
        page.wait_for_function("() => window.app && window.app.graph && window.app.canvas && window.LiteGraph")
        page.wait_for_timeout(1200)
        page.evaluate("async (wf) => { await window.app.loadGraphData(wf, true, true, 'example'); }",
                      json.loads(workflow.read_text()))
        page.wait_for_timeout(800)
        page.evaluate(JS_FIT, top)
        page.evaluate(JS_NEW_SEEDS)
        submitted = len(fal.submits)
        page.evaluate("() => app.queuePrompt(0, 1)")
        if workflow.stem == "grok_imagine_text_to_image":
            fal.wait_for(lambda f, before=submitted: len(f.submits) > before, 30)
            page.wait_for_timeout(3500)  # queued 1.5 s, then running: "Running at fal (2s)"
            clip = page.evaluate(JS_FIT, top)
            page.wait_for_timeout(300)
            page.screenshot(path=str(ROOT / "docs" / "node_during_run.png"), clip=clip)
        wait_idle(comfy)
        page.wait_for_timeout(1500)
        clip = page.evaluate(JS_FIT, top)
        page.wait_for_timeout(500)
        thumbnail(page.screenshot(), workflow.with_suffix(".jpg"))
        if workflow.stem == "grok_imagine_text_to_image":
            page.screenshot(path=str(ROOT / "docs" / "node_after_run.png"), clip=clip)
        print(f"wrote {workflow.with_suffix('.jpg').relative_to(ROOT)}")


def shoot_settings(page: Page) -> None:
    page.evaluate("() => app.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
    page.wait_for_timeout(1000)
    page.evaluate("""() => [...document.querySelectorAll('.p-dialog *, [role=dialog] *')]
        .find((e) => e.children.length === 0 && e.textContent.trim() === 'Grok Imagine (fal)')?.click()""")
    page.wait_for_selector(".grok-imagine-spend-recent tr")
    page.wait_for_timeout(800)
    page.screenshot(path=str(ROOT / "docs" / "key_setting.png"))
    page.fill(".grok-imagine-spend-panel input", "5")
    page.click(".grok-imagine-set-limit")
    page.wait_for_function("() => document.querySelector('.grok-imagine-spend-limit').textContent.includes('$5.00')")
    page.wait_for_timeout(300)
    box = page.evaluate("""() => {
        const p = document.querySelector('.grok-imagine-spend-panel').getBoundingClientRect();
        return { x: p.left - 20, y: p.top - 20, width: p.width + 40, height: p.height + 40 };
    }""")
    page.screenshot(path=str(ROOT / "docs" / "spend_setting.png"), clip=box)
    page.click(".grok-imagine-clear-limit")
    page.keyboard.press("Escape")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", nargs="+", metavar="NAME", help="only these examples' thumbnails")
    only = parser.parse_args().examples
    front_end_root = NEW_FRONTEND if (NEW_FRONTEND / "index.html").is_file() else None
    with FakeFal(accepted_keys={TEST_KEY}, queue_time=1.5, run_time=5.0) as fal, \
            tempfile.TemporaryDirectory() as base:
        comfy = start_comfy_on(Path(base), pack_env(fal.url, Path(base), TEST_KEY), front_end_root)
        try:
            comfy.post("/settings/Comfy.TutorialCompleted", True)
            comfy.post("/settings/Comfy.Minimap.Visible", False)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_FLAGS)
                page = open_page(browser, comfy, vue_nodes=False)
                version = page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__")
                print(f"frontend {version}")
                top = 80 if front_end_root else 50  # below 1.5x's floating graph bar
                shoot_examples(page, comfy, fal, top, only)
                if only:
                    browser.close()
                    return
                shoot_settings(page)
                page.close()
                if front_end_root is None:
                    print("frontend 1.58.1 not found: docs/badge_nodes2.png not rewritten")
                else:
                    page = open_page(browser, comfy, vue_nodes=True)
                    labels = page.evaluate(JS_BADGE_GRAPH)
                    page.evaluate(JS_FIT, top)
                    page.wait_for_timeout(1200)
                    clip = page.evaluate(JS_FIT_NODES2)
                    page.wait_for_timeout(800)
                    page.screenshot(path=str(ROOT / "docs" / "badge_nodes2.png"), clip=clip)
                    print(f"badges in Nodes 2.0: {labels}")
                    page.close()
                    comfy.post("/settings/Comfy.VueNodes.Enabled", False)
                browser.close()
        finally:
            comfy.stop()
    print("wrote docs/*.png and example_workflows/*.jpg")


if __name__ == "__main__":
    main()
