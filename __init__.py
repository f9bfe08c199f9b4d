"""Grok Imagine (fal): ComfyUI nodes for xAI's Grok Imagine image models on fal.ai.

ComfyUI imports this folder as a package named after the folder. Imported as a plain file instead
(pytest does that with the `__init__.py` of its rootdir, when the folder's name is no Python name),
it defines no nodes and registers nothing.
"""

WEB_DIRECTORY = "./web"

if __package__:
    from .nodes import routes
    from .nodes.registry import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    routes.register()
else:
    NODE_CLASS_MAPPINGS: dict[str, type] = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
