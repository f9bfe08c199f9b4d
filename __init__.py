"""Grok Imagine (fal): ComfyUI nodes for xAI's Grok Imagine image models on fal.ai."""

from .nodes import routes
from .nodes.edit import FalGrokImagineEdit
from .nodes.result import FalGrokImagineResult
from .nodes.text_to_image import FalGrokImagineImage

NODE_CLASS_MAPPINGS = {
    "FalGrokImagineImage": FalGrokImagineImage,
    "FalGrokImagineEdit": FalGrokImagineEdit,
    "FalGrokImagineResult": FalGrokImagineResult,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FalGrokImagineImage": "Grok Imagine Image (fal)",
    "FalGrokImagineEdit": "Grok Imagine Edit (fal)",
    "FalGrokImagineResult": "Grok Imagine Result (fal)",
}
WEB_DIRECTORY = "./web"

routes.register()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
