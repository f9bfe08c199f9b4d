"""Grok Imagine Prompt List (fal): one prompt per line, out as a ComfyUI list, so that one Grok node
runs once per prompt (all at once, at fal's pace)."""

from __future__ import annotations

from typing import Any

from ..fal_transport.errors import InvalidInputError
from . import widgets


def prompts_of(text: object) -> list[str]:
    """The non-blank lines of `text`, stripped, in order."""
    lines = [line.strip() for line in str(text or "").splitlines()]
    return [line for line in lines if line]


class FalGrokImaginePromptList(widgets.GrokImagesNode):
    """A list of prompts, one per line, to feed a batch into a Grok node."""

    DESCRIPTION = (
        "A list of prompts, one per line (blank lines are skipped), as a ComfyUI list of strings. Connect it to a "
        "Grok node's prompt: the node then runs once per prompt, all of them sent to fal at once and run at the "
        "pace your fal account allows; the images come back in list order. Costs nothing by itself."
    )
    FUNCTION = "split"
    RETURN_TYPES = ("STRING", "INT")
    RETURN_NAMES = ("prompts", "count")
    OUTPUT_IS_LIST = (True, False)
    OUTPUT_TOOLTIPS = (
        "The prompts, one list item each: the node they feed runs once per item.",
        "How many prompts the list holds.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "prompts": ("STRING", {
                    "multiline": True,
                    "default": "",
                    "tooltip": "One prompt per line. Blank lines are skipped; spaces around a prompt are dropped.",
                }),
            },
        }

    def split(self, prompts: str) -> tuple[list[str], int]:
        items = prompts_of(prompts)
        if not items:
            raise InvalidInputError("The prompt list is empty. Type one prompt per line into 'prompts'.",
                                    field="prompts")
        for number, item in enumerate(items, start=1):
            try:
                widgets.check_prompt(item)  # a broken character is named before anything runs
            except InvalidInputError as exc:
                raise InvalidInputError(f"Prompt {number} of the list: {exc}", field="prompts") from None
        return (items, len(items))
