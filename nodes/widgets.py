"""The widgets of the Grok Imagine nodes: input definitions (one definition, used by every node) and the checks
that turn widget values into a typed request (`image_request`) before anything is sent."""

from __future__ import annotations

from typing import Any

from ..fal_transport.errors import InvalidInputError
from ..media.output_batch import MAX_BATCH_PIXELS
from . import grok_api as api
from .grok_api import GrokModel, ImageRequest, Kind

SEED_MAX = 0xFFFFFFFFFFFFFFFF

RETURN_TYPES = ("IMAGE", "STRING", "STRING")
RETURN_NAMES = ("images", "revised_prompt", "image_urls")
OUTPUT_TOOLTIPS = (
    "All generated images as one batch.",
    "The prompt fal actually used (Grok rewrites prompts before generating).",
    "The fal URLs of the images, one per line; empty in sync mode.",
)


class GrokImagesNode:
    """What every Grok Imagine node shares: its category and its outputs (a public contract)."""

    CATEGORY = "fal/Grok Imagine"
    RETURN_TYPES = RETURN_TYPES
    RETURN_NAMES = RETURN_NAMES
    OUTPUT_TOOLTIPS = OUTPUT_TOOLTIPS


def prompt_input(tooltip: str) -> tuple[str, dict[str, Any]]:
    return ("STRING", {"multiline": True, "default": "", "tooltip": tooltip})


def num_images_input() -> tuple[str, dict[str, Any]]:
    return ("INT", {
        "default": 1, "min": 1, "max": api.MAX_IMAGES_PER_NODE,
        "tooltip": "How many images to generate; each one is billed. Above 4 the node sends one request per "
                   "4 images, all at once, and returns one batch in request order.",
    })


def aspect_ratio_input(choices: tuple[str, ...], default: str, tooltip: str) -> tuple[list[str], dict[str, Any]]:
    return (list(choices), {"default": default, "tooltip": tooltip})


def common_tail_inputs() -> dict[str, Any]:
    """resolution, output_format, sync_mode, seed: in this order on every Grok node."""
    return {
        "resolution": (list(api.RESOLUTIONS), {
            "default": api.DEFAULT_RESOLUTION,
            "tooltip": "1k for standard resolution, 2k for high resolution.",
        }),
        "output_format": (list(api.OUTPUT_FORMATS), {
            "default": api.DEFAULT_OUTPUT_FORMAT,
            "tooltip": "File format fal encodes the images in (jpeg is smallest, png is lossless).",
        }),
        "sync_mode": ("BOOLEAN", {
            "default": False,
            "tooltip": "On: fal returns the images inline and keeps nothing in its request history "
                       "(no URLs, nothing to recover later).",
        }),
        "seed": ("INT", {
            "default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True,
            "tooltip": "Not sent to fal (Grok takes no seed). Changing it makes ComfyUI run the node "
                       "again instead of reusing the last result.",
        }),
    }


HIDDEN = {"unique_id": "UNIQUE_ID", "extra_pnginfo": "EXTRA_PNGINFO"}
ON_REFUSAL: tuple[str, ...] = ("fail", "placeholder")
OUTPUT_SIZES: tuple[str, ...] = ("fal", "match first reference")


def quality_input() -> tuple[list[str], dict[str, Any]]:
    return (list(api.QUALITIES), {
        "default": api.DEFAULT_QUALITY,
        "tooltip": "medium: Grok Imagine 2.0's better images. low: faster and cheaper. Each is billed at its own "
                   "price (shown on the node).",
    })


def on_refusal_input() -> tuple[list[str], dict[str, Any]]:
    return (list(ON_REFUSAL), {
        "default": "fail",
        "tooltip": "fail: a content-policy refusal stops the node (and the prompt). placeholder: a neutral grey "
                   "image of the expected size stands in, revised_prompt says why, and the graph goes on.",
    })


def output_size_input() -> tuple[list[str], dict[str, Any]]:
    return (list(OUTPUT_SIZES), {
        "default": "fal",
        "tooltip": "fal: the images as fal returns them. match first reference: each image scaled to cover the "
                   "first reference's exact pixel size and centre-cropped (never stretched), to paste an edit back.",
    })


def tier_input() -> tuple[list[str], dict[str, Any]]:
    return (list(api.TIERS), {
        "default": api.DEFAULT_TIER,
        "tooltip": "standard: xAI's fast model. quality: the higher-quality endpoint (quality/...), billed at "
                   "its own price.",
    })


def check_prompt(prompt: object, max_chars: int = api.MAX_PROMPT_CHARS) -> str:
    """`prompt` if fal can take it: not blank, valid UTF-8, at most `max_chars` characters."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInputError("The prompt is empty. Type what the image should show into 'prompt'.", field="prompt")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"'prompt' holds a broken character at position {exc.start + 1} (a lone surrogate, left by copying "
            "from some editors). Retype the text around it, or paste it as plain text.",
            field="prompt",
        ) from None
    if len(prompt) > max_chars:
        raise InvalidInputError(
            f"'prompt' is {len(prompt):,} characters long; fal takes at most {max_chars:,}. Shorten it.",
            field="prompt",
        )
    return prompt


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidInputError(f"'{name}' must be one of {', '.join(allowed)}; got {value!r}.", field=name)
    return value  # type: ignore[return-value]


def check_num_images(num_images: object) -> int:
    try:
        count = int(num_images)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        count = 0
    if not 1 <= count <= api.MAX_IMAGES_PER_NODE:
        raise InvalidInputError(
            f"'num_images' must be 1..{api.MAX_IMAGES_PER_NODE}, got {num_images!r}.", field="num_images"
        )
    return count


def choice_input(model: GrokModel) -> tuple[list[str], dict[str, Any]]:
    """The optional input that picks the model's endpoint (tier) or quality."""
    return tier_input() if model.choice_input == "tier" else quality_input()


def image_request(model: GrokModel, kind: Kind, inputs: dict[str, Any], optional: dict[str, Any]) -> ImageRequest:
    """The request a node's widget values ask for, checked: `inputs` the required ones but the seed (never
    sent), `optional` its optional ones (a workflow saved before an input existed simply lacks it)."""
    choice = check_choice(model.choice_input, optional.get(model.choice_input, model.default_choice), model.choices)
    ratios = api.EDIT_ASPECT_RATIOS if kind == "edit" else api.ASPECT_RATIOS
    return ImageRequest(
        endpoint=model.endpoints[kind][choice],
        prompt=check_prompt(inputs["prompt"]),
        num_images=check_num_images(inputs["num_images"]),
        aspect_ratio=check_choice("aspect_ratio", inputs["aspect_ratio"], ratios),
        resolution=check_choice("resolution", inputs["resolution"], api.RESOLUTIONS),
        output_format=check_choice("output_format", inputs["output_format"], api.OUTPUT_FORMATS),
        sync_mode=bool(inputs["sync_mode"]),
        quality=choice if model.choice_in_body else None,
    )


def check_output_batch(num_images: int, size: tuple[int, int], known_from: str, *fixes: str) -> None:
    """Refuse, before anything is sent, a run whose images are known not to fit one output batch: `size` is
    what they will be (`known_from` says why), `fixes` what else the user can change besides `num_images`."""
    width, height = size
    pixels = num_images * width * height
    if pixels <= MAX_BATCH_PIXELS:
        return
    fits = MAX_BATCH_PIXELS // (width * height)
    options = [*([f"set 'num_images' to at most {fits}"] if fits else []), *fixes]
    advice = options[0] if len(options) == 1 else f"{', '.join(options[:-1])}, or {options[-1]}"
    raise InvalidInputError(
        f"{num_images} images of {width}x{height} ({known_from}) make a batch of {pixels / 1e6:.0f} MP (about "
        f"{pixels * 12 / 2**30:.1f} GiB), over the node's limit of {MAX_BATCH_PIXELS // 1_000_000} MP, so nothing "
        f"was sent. {advice[0].upper()}{advice[1:]}.",
        field="num_images",
    )


def documented_size(request: ImageRequest) -> tuple[int, int] | None:
    """The (width, height) xAI documents for the request's settings (None for "auto"), refused before anything
    is sent when `num_images` of that size cannot fit one output batch."""
    size = request.documented_size
    if size is not None:
        check_output_batch(request.num_images, size,
                           f"the size xAI documents for {request.aspect_ratio} at {request.resolution}",
                           "choose a smaller 'resolution'")
    return size
