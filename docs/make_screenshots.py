"""Make the README screenshots and the example workflows' thumbnails in the real ComfyUI frontend.

Run with the python of ComfyUI's venv (it has playwright), Debian's chromium installed:

    COMFYUI_DIR=~/comfy-host/ComfyUI ~/comfy-host/venv/bin/python docs/make_screenshots.py

It starts the project's fake fal server (slow enough to catch the node mid-run) and ComfyUI with
the pack, opens each example workflow, presses Run, and writes docs/node_during_run.png,
docs/node_after_run.png, docs/key_setting.png and example_workflows/<name>.jpg.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

from comfy_host import comfy_paths, start_comfy  # noqa: E402
from comfy_like import TEST_KEY  # noqa: E402
from fake_fal import FakeFal  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def thumbnail(png: bytes, target: Path, width: int = 640) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.thumbnail((width, width))
    image.save(target, "JPEG", quality=82, optimize=True)


def main() -> None:
    paths = comfy_paths()
    if paths is None:
        sys.exit("set COMFYUI_DIR to a ComfyUI checkout with its venv beside it")
    with FakeFal(accepted_keys={TEST_KEY}, queue_time=1.5, run_time=5.0) as fal, \
            tempfile.TemporaryDirectory() as base:
        env = {"FAL_KEY": TEST_KEY, "FAL_QUEUE_BASE_URL": fal.url, "FAL_REST_BASE_URL": fal.url,
               "GROK_IMAGINE_STATE_DIR": str(Path(base) / "state")}
        comfy = start_comfy(*paths, Path(base), env)
        try:
            comfy.post("/settings/Comfy.TutorialCompleted", True)
            with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
                ctx = p.chromium.launch_persistent_context(
                    profile, executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_FLAGS,
                    viewport={"width": 1600, "height": 1000})
                page = ctx.pages[0] if ctx.pages else ctx.new_page()
                page.goto(comfy.url + "/", wait_until="load")
                page.wait_for_function("() => window.app && window.app.graph && window.app.canvas")
                page.wait_for_timeout(1500)
                for workflow in sorted((ROOT / "example_workflows").glob("*.json")):
                    page.evaluate("async (wf) => { await window.app.loadGraphData(wf, true, true, 'example'); }",
                                  __import__("json").loads(workflow.read_text()))
                    page.wait_for_timeout(800)
                    submitted = len(fal.submits)
                    page.locator('[data-testid="queue-button"]').first.click()
                    if workflow.stem == "grok_imagine_text_to_image":
                        deadline = time.monotonic() + 30
                        while len(fal.submits) == submitted and time.monotonic() < deadline:
                            time.sleep(0.1)
                        page.wait_for_timeout(3500)
                        page.screenshot(path=str(ROOT / "docs" / "node_during_run.png"),
                                        clip={"x": 60, "y": 60, "width": 1140, "height": 700})
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        busy = comfy.get("/queue")
                        if not busy["queue_running"] and not busy["queue_pending"]:
                            break
                        time.sleep(0.25)
                    page.wait_for_timeout(1500)
                    shot = page.screenshot()
                    thumbnail(shot, workflow.with_suffix(".jpg"))
                    if workflow.stem == "grok_imagine_text_to_image":
                        page.screenshot(path=str(ROOT / "docs" / "node_after_run.png"),
                                        clip={"x": 60, "y": 60, "width": 1140, "height": 700})
                page.evaluate("() => window.app.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
                page.wait_for_timeout(1000)
                page.get_by_text("Grok Imagine (fal)").first.click()
                page.wait_for_timeout(1000)
                page.screenshot(path=str(ROOT / "docs" / "key_setting.png"))
                ctx.close()
        finally:
            comfy.stop()
    print("wrote docs/*.png and example_workflows/*.jpg")


if __name__ == "__main__":
    main()
