"""Every node of the pack, under the ids and names saved workflows use (a public contract)."""

from __future__ import annotations

from .edit import FalGrokImagine2Edit, FalGrokImagineEdit
from .prompt_list import FalGrokImaginePromptList
from .result_node import FalGrokImagineResult
from .text_to_image import FalGrokImagine2Image, FalGrokImagineImage
from .video import (
    FalGrokImagineReferenceVideo,
    FalGrokImagineVideo,
    FalGrokImagineVideoEdit,
    FalGrokImagineVideoExtend,
    FalGrokImagineVideoResult,
)

NODE_CLASS_MAPPINGS: dict[str, type] = {
    "FalGrokImagineImage": FalGrokImagineImage,
    "FalGrokImagineEdit": FalGrokImagineEdit,
    "FalGrokImagineResult": FalGrokImagineResult,
    "FalGrokImagine2Image": FalGrokImagine2Image,
    "FalGrokImagine2Edit": FalGrokImagine2Edit,
    "FalGrokImaginePromptList": FalGrokImaginePromptList,
    "FalGrokImagineVideo": FalGrokImagineVideo,
    "FalGrokImagineReferenceVideo": FalGrokImagineReferenceVideo,
    "FalGrokImagineVideoEdit": FalGrokImagineVideoEdit,
    "FalGrokImagineVideoExtend": FalGrokImagineVideoExtend,
    "FalGrokImagineVideoResult": FalGrokImagineVideoResult,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "FalGrokImagineImage": "Grok Imagine Image (fal)",
    "FalGrokImagineEdit": "Grok Imagine Edit (fal)",
    "FalGrokImagineResult": "Grok Imagine Result (fal)",
    "FalGrokImagine2Image": "Grok Imagine 2.0 Image (fal)",
    "FalGrokImagine2Edit": "Grok Imagine 2.0 Edit (fal)",
    "FalGrokImaginePromptList": "Grok Imagine Prompt List (fal)",
    "FalGrokImagineVideo": "Grok Imagine Video (fal)",
    "FalGrokImagineReferenceVideo": "Grok Imagine Reference Video (fal)",
    "FalGrokImagineVideoEdit": "Grok Imagine Video Edit (fal)",
    "FalGrokImagineVideoExtend": "Grok Imagine Video Extend (fal)",
    "FalGrokImagineVideoResult": "Grok Imagine Video Result (fal)",
}
