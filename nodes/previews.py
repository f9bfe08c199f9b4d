"""Previews on the node after a run: fal's own image files written to ComfyUI's temp directory.

The bytes fal sent are written as they are (no re-encoding), so a preview costs a file write.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..image_io.batch import FetchedImage
from . import host

log = logging.getLogger("grok_imagine_fal")

BROWSER_FORMATS = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif"}
SUBFOLDER = "grok_imagine"


def save_previews(files: list[FetchedImage], request_id: str) -> list[dict[str, str]]:
    """ComfyUI `ui.images` entries for `files`; empty outside ComfyUI or if the temp dir is unusable."""
    folder_paths = host.folder_paths()
    if folder_paths is None:
        return []
    try:
        folder = Path(folder_paths.get_temp_directory()) / SUBFOLDER
        folder.mkdir(parents=True, exist_ok=True)
        previews = []
        for index, image in enumerate(files):
            extension = BROWSER_FORMATS.get(image.file_format)
            if extension is None:
                continue
            name = f"{re.sub(r'[^A-Za-z0-9_-]', '_', request_id)}_{index + 1}.{extension}"
            (folder / name).write_bytes(image.data)
            previews.append({"filename": name, "subfolder": SUBFOLDER, "type": "temp"})
        return previews
    except OSError:
        log.warning("could not write previews for request %s", request_id, exc_info=True)
        return []
