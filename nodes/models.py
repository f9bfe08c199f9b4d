"""The two Grok Imagine models on fal, as the nodes see them: which input picks the endpoint (the first
model's `tier`, 2.0's `quality`), and what goes into the body besides the fields every node sends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from . import grok_spec as spec
from . import schema

Kind = Literal["text-to-image", "edit"]


@dataclass(frozen=True)
class GrokModel:
    choice_input: str  # the optional input that picks the endpoint or the quality
    choices: tuple[str, ...]
    default_choice: str
    endpoints: dict[str, dict[str, str]]  # kind -> choice -> endpoint
    choice_in_body: bool  # 2.0 sends its `quality`; the first model's tier is only the endpoint
    choice_input_definition: Callable[[], tuple[list[str], dict[str, Any]]]

    def endpoint_and_arguments(self, kind: Kind, inputs: dict[str, Any],
                               optional: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(endpoint, body) for the node's widget values: `inputs` the required ones but the seed (never sent),
        `optional` its optional ones (a workflow saved before an input existed simply lacks it)."""
        choice = schema.check_choice(self.choice_input, optional.get(self.choice_input, self.default_choice),
                                     self.choices)
        ratios = spec.EDIT_ASPECT_RATIOS if kind == "edit" else spec.ASPECT_RATIOS
        arguments = schema.common_arguments(
            inputs["prompt"], inputs["num_images"], inputs["aspect_ratio"], ratios, inputs["resolution"],
            inputs["output_format"], inputs["sync_mode"])
        if self.choice_in_body:
            arguments[self.choice_input] = choice
        return self.endpoints[kind][choice], arguments


GROK_IMAGINE = GrokModel("tier", spec.TIERS, spec.DEFAULT_TIER, spec.ENDPOINT_BY_TIER, False, schema.tier_input)
GROK_IMAGINE_2 = GrokModel(
    "quality", spec.QUALITIES, spec.DEFAULT_QUALITY,
    {kind: {q: endpoint for q in spec.QUALITIES} for kind, endpoint in spec.V2_ENDPOINTS.items()},
    True, schema.quality_input)
