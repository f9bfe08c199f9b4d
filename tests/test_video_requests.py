"""The Grok Imagine Video nodes' contract (inputs, outputs, tooltips), the request each sends (what is sent, what is
refused before anything is sent, and why), what the journal knows it by, and what it costs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from comfy_like import pack_module
from fake_fal.video import VIDEO_ENDPOINTS, billed_video_price, validate_video_arguments

api = pack_module("nodes.video_api")
video = pack_module("nodes.video")
registry = pack_module("nodes.registry")
reference_tensors = pack_module("nodes.references").reference_tensors
errors = pack_module("fal_transport.errors")
Reference = pack_module("nodes.grok_api").Reference

URL = "https://fal.media/files/in.png"
VIDEO_URL = "https://fal.media/files/v.mp4"
VIDEO_NODES = ("FalGrokImagineVideo", "FalGrokImagineReferenceVideo", "FalGrokImagineVideoEdit",
               "FalGrokImagineVideoExtend", "FalGrokImagineVideoResult")


def media(count: int = 1, url: str = URL) -> tuple:
    return tuple(Reference(url, f"{index:064x}") for index in range(count))


def with_video(request: object, url: str = VIDEO_URL, seconds: float = 6.0, size: tuple[int, int] = (1280, 720)):
    return replace(request.measured(api.InputVideo(seconds, *size)), video=Reference(url, "f" * 64))


def inputs_of(schema: type) -> dict[str, list[tuple[str, object, object]]]:
    """Per section, (name, type, default) in order."""
    types = schema.INPUT_TYPES()
    return {section: [(name, kind if isinstance(kind, str) else tuple(kind), options.get("default"))
                      for name, (kind, options) in types[section].items()]
            for section in ("required", "optional") if section in types}


RATIOS = ("16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16")


def test_the_video_nodes_have_their_ids_names_and_outputs() -> None:
    assert {node_id: registry.NODE_DISPLAY_NAME_MAPPINGS[node_id] for node_id in VIDEO_NODES} == {
        "FalGrokImagineVideo": "Grok Imagine Video (fal)",
        "FalGrokImagineReferenceVideo": "Grok Imagine Reference Video (fal)",
        "FalGrokImagineVideoEdit": "Grok Imagine Video Edit (fal)",
        "FalGrokImagineVideoExtend": "Grok Imagine Video Extend (fal)",
        "FalGrokImagineVideoResult": "Grok Imagine Video Result (fal)",
    }
    for node_id in VIDEO_NODES:
        node = registry.NODE_CLASS_MAPPINGS[node_id]
        assert node.CATEGORY == "fal/Grok Imagine"
        assert node.RETURN_TYPES == ("VIDEO", "STRING", "IMAGE")
        assert node.RETURN_NAMES == ("video", "video_url", "last_frame")
        assert node.INPUT_TYPES()["hidden"] == {"unique_id": "UNIQUE_ID", "extra_pnginfo": "EXTRA_PNGINFO"}


def test_grok_imagine_video_inputs_keep_their_contract() -> None:
    assert inputs_of(video.FalGrokImagineVideo) == {
        "required": [("prompt", "STRING", ""), ("duration", "INT", 6), ("aspect_ratio", ("auto", *RATIOS), "auto"),
                     ("resolution", ("480p", "720p", "1080p"), "720p"),
                     ("model", ("grok-imagine-video", "grok-imagine-video-1.5"), "grok-imagine-video"),
                     ("seed", "INT", 0)],
        "optional": [("image", "IMAGE", None)],
    }
    duration = video.FalGrokImagineVideo.INPUT_TYPES()["required"]["duration"][1]
    assert (duration["min"], duration["max"]) == (1, 15)


def test_reference_video_inputs_keep_their_contract() -> None:
    assert inputs_of(video.FalGrokImagineReferenceVideo) == {
        "required": [("image", "IMAGE", None), ("prompt", "STRING", ""), ("duration", "INT", 8),
                     ("aspect_ratio", RATIOS, "16:9"), ("resolution", ("480p", "720p"), "480p"), ("seed", "INT", 0)],
        "optional": [(f"image_{n}", "IMAGE", None) for n in range(2, 8)],
    }
    duration = video.FalGrokImagineReferenceVideo.INPUT_TYPES()["required"]["duration"][1]
    assert (duration["min"], duration["max"]) == (1, 10)


def test_edit_and_extend_inputs_keep_their_contract() -> None:
    assert inputs_of(video.FalGrokImagineVideoEdit) == {"required": [
        ("video", "VIDEO", None), ("prompt", "STRING", ""), ("resolution", ("auto", "480p", "720p"), "auto"),
        ("seed", "INT", 0)]}
    assert inputs_of(video.FalGrokImagineVideoExtend) == {"required": [
        ("video", "VIDEO", None), ("prompt", "STRING", ""), ("duration", "INT", 6), ("seed", "INT", 0)]}
    duration = video.FalGrokImagineVideoExtend.INPUT_TYPES()["required"]["duration"][1]
    assert (duration["min"], duration["max"]) == (2, 10)
    assert inputs_of(video.FalGrokImagineVideoResult) == {"required": [("request_id", "STRING", "")]}


@pytest.mark.parametrize("node_id", VIDEO_NODES)
def test_every_input_and_output_has_a_tooltip_and_the_node_a_description(node_id: str) -> None:
    node = registry.NODE_CLASS_MAPPINGS[node_id]
    types = node.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, (_, options) in types.get(section, {}).items():
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert len(node.OUTPUT_TOOLTIPS) == 3 and all(node.OUTPUT_TOOLTIPS)
    assert len(node.DESCRIPTION) > 80 and "fal" in node.DESCRIPTION


# --------------------------------------------------------------------------------------------
# Grok Imagine Video: text or image to video
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ratio", "resolution", "model", "with_image", "endpoint", "body"), [
    ("auto", "720p", "grok-imagine-video", False, "xai/grok-imagine-video/text-to-video",
     {"prompt": "p", "duration": 6, "resolution": "720p"}),
    ("9:16", "480p", "grok-imagine-video", False, "xai/grok-imagine-video/text-to-video",
     {"prompt": "p", "duration": 6, "resolution": "480p", "aspect_ratio": "9:16"}),
    ("auto", "720p", "grok-imagine-video", True, "xai/grok-imagine-video/image-to-video",
     {"prompt": "p", "duration": 6, "resolution": "720p", "aspect_ratio": "auto", "image_url": URL}),
    ("1:1", "720p", "grok-imagine-video", True, "xai/grok-imagine-video/image-to-video",
     {"prompt": "p", "duration": 6, "resolution": "720p", "aspect_ratio": "1:1", "image_url": URL}),
    ("auto", "1080p", "grok-imagine-video-1.5", False, "xai/grok-imagine-video/v1.5/text-to-video",
     {"prompt": "p", "duration": 6, "resolution": "1080p"}),
    ("3:2", "720p", "grok-imagine-video-1.5", False, "xai/grok-imagine-video/v1.5/text-to-video",
     {"prompt": "p", "duration": 6, "resolution": "720p", "aspect_ratio": "3:2"}),
    ("auto", "480p", "grok-imagine-video-1.5", True, "xai/grok-imagine-video/v1.5/image-to-video",
     {"prompt": "p", "duration": 6, "resolution": "480p", "image_url": URL}),
])
def test_the_video_node_sends_what_its_endpoint_takes(ratio: str, resolution: str, model: str, with_image: bool,
                                                      endpoint: str, body: dict) -> None:
    request = api.text_or_image_to_video("p", 6, ratio, resolution, model, with_image=with_image)
    assert request.endpoint == endpoint and request.sync_mode is False
    sent = replace(request, images=media(1 if with_image else 0)).body()
    assert sent == body
    assert validate_video_arguments(endpoint, sent)[1] == [], "fal (the fake) accepts the body"


@pytest.mark.parametrize(("model", "with_image", "fix"), [
    ("grok-imagine-video", False, "set model to grok-imagine-video-1.5"),
    ("grok-imagine-video", True, "pick 720p"),
    ("grok-imagine-video-1.5", True, "disconnect 'image'"),
])
def test_1080p_where_fal_has_none_is_refused_naming_the_fix(model: str, with_image: bool, fix: str) -> None:
    with pytest.raises(errors.InvalidInputError, match="not 1080p") as raised:
        api.text_or_image_to_video("p", 6, "auto", "1080p", model, with_image=with_image)
    assert raised.value.field == "resolution" and fix in str(raised.value)


def test_v15_image_to_video_takes_the_images_shape_and_refuses_another_ratio() -> None:
    with pytest.raises(errors.InvalidInputError, match="Set aspect_ratio to auto") as raised:
        api.text_or_image_to_video("p", 6, "16:9", "720p", "grok-imagine-video-1.5", with_image=True)
    assert raised.value.field == "aspect_ratio"


@pytest.mark.parametrize(("prompt", "message"), [
    ("", "The prompt is empty. Type what the video should show"),
    ("   \n", "The prompt is empty"),
    ("x" * 4097, "4,097 characters long; fal takes at most 4,096"),
    ("broken \ud800 text", "broken character"),
])
def test_a_prompt_fal_would_refuse_is_refused_first(prompt: str, message: str) -> None:
    with pytest.raises(errors.InvalidInputError, match=message) as raised:
        api.text_or_image_to_video(prompt, 6, "auto", "720p", "grok-imagine-video", with_image=False)
    assert raised.value.field == "prompt"
    assert api.text_or_image_to_video("x" * 4096, 6, "auto", "720p", "grok-imagine-video", with_image=False)


@pytest.mark.parametrize("duration", [0, 16, 6.5, True, "6"])
def test_a_duration_outside_1_to_15_whole_seconds_is_refused(duration: object) -> None:
    with pytest.raises(errors.InvalidInputError, match="from 1 to 15") as raised:
        api.text_or_image_to_video("p", duration, "auto", "720p", "grok-imagine-video", with_image=False)
    assert raised.value.field == "duration"


@pytest.mark.parametrize(("choices", "field"), [(("21:9", "720p", "grok-imagine-video"), "aspect_ratio"),
                                               (("auto", "2160p", "grok-imagine-video"), "resolution"),
                                               (("auto", "720p", "grok-imagine-video-2"), "model")])
def test_a_choice_from_another_version_is_refused_naming_the_input(choices: tuple[str, str, str], field: str) -> None:
    with pytest.raises(errors.InvalidInputError, match=f"'{field}' must be one of") as raised:
        api.text_or_image_to_video("p", 6, *choices, with_image=False)
    assert raised.value.field == field


# --------------------------------------------------------------------------------------------
# Reference Video
# --------------------------------------------------------------------------------------------


def test_reference_video_sends_its_references_as_a_list() -> None:
    request = api.reference_to_video("@Image1 and @Image2 dance", 8, "16:9", "480p")
    body = replace(request, images=media(2)).body()
    assert body == {"prompt": "@Image1 and @Image2 dance", "duration": 8, "aspect_ratio": "16:9", "resolution": "480p",
                    "reference_image_urls": [URL, URL]}
    assert validate_video_arguments(request.endpoint, body)[1] == []
    assert replace(request, images=media(1)).body()["reference_image_urls"] == [URL], "one reference is still a list"


@pytest.mark.parametrize("references", [0, 8])
def test_reference_video_takes_one_to_seven_references(references: int) -> None:
    with pytest.raises(errors.InvalidInputError, match="1 to 7 reference images"):
        api.check_reference_count(references)


@pytest.mark.parametrize(("duration", "resolution", "field"), [(11, "480p", "duration"), (8, "1080p", "resolution")])
def test_reference_video_has_its_own_limits(duration: int, resolution: str, field: str) -> None:
    with pytest.raises(errors.InvalidInputError) as raised:
        api.reference_to_video("p", duration, "16:9", resolution)
    assert raised.value.field == field


def images(count: int, height: int = 16) -> torch.Tensor:
    return torch.rand(count, height, 24, 3)


def reference_images(inputs: dict) -> list[torch.Tensor]:
    """Reference Video's references from its inputs, as the node picks them."""
    return reference_tensors(inputs, video.REFERENCE_INPUTS, api.MAX_REFERENCES)


def test_the_references_are_the_first_of_image_then_one_from_each_further_input() -> None:
    batch, second, third = images(9), images(2, 20), images(1, 30)
    picked = reference_images({"image": batch, "image_2": None})
    assert len(picked) == 7, "at most seven from 'image'"
    assert torch.equal(picked[0], batch[0]) and torch.equal(picked[6], batch[6])
    picked = reference_images({"image": images(2), "image_3": second, "image_5": third})
    assert [tuple(p.shape[:2]) for p in picked] == [(16, 24), (16, 24), (20, 24), (30, 24)]
    assert torch.equal(picked[2], second[0])


def test_more_than_seven_references_in_all_are_refused() -> None:
    with pytest.raises(errors.InvalidInputError, match="'image' gives 7 and the further inputs 1 more"):
        reference_images({"image": images(7), "image_2": images(1)})


def test_a_reference_input_that_is_not_an_image_is_named() -> None:
    with pytest.raises(errors.InvalidInputError, match="'image_4' must be an IMAGE") as raised:
        reference_images({"image": images(1), "image_4": "not an image"})
    assert raised.value.field == "image_4"


# --------------------------------------------------------------------------------------------
# Edit and extend
# --------------------------------------------------------------------------------------------


def test_edit_sends_its_prompt_and_resolution_with_the_video() -> None:
    request = with_video(api.edit_video("make it snow", "auto"), seconds=5.0)
    body = request.body()
    assert body == {"prompt": "make it snow", "resolution": "auto", "video_url": VIDEO_URL}
    assert validate_video_arguments(request.endpoint, body)[1] == []
    with pytest.raises(errors.InvalidInputError) as raised:
        api.edit_video("p", "1080p")
    assert raised.value.field == "resolution"


@pytest.mark.parametrize("seconds", [2.0, 15.0, 9.96])
def test_extend_takes_an_input_of_2_to_15_seconds(seconds: float) -> None:
    request = with_video(api.extend_video("p", 6), seconds=seconds)
    body = request.body()
    assert body == {"prompt": "p", "duration": 6, "video_url": VIDEO_URL}
    assert validate_video_arguments(request.endpoint, body)[1] == []


@pytest.mark.parametrize(("seconds", "fix"), [(1.9, "Connect a longer video"), (15.1, "Trim it to at most 15 s")])
def test_extend_refuses_an_input_fal_would_refuse_naming_the_fix(seconds: float, fix: str) -> None:
    with pytest.raises(errors.InvalidInputError, match=f"'video' is {seconds:.1f} s. {fix}") as raised:
        api.extend_video("p", 6).measured(api.InputVideo(seconds, 1280, 720))
    assert raised.value.field == "video"


@pytest.mark.parametrize("duration", [1, 11])
def test_an_extension_of_2_to_10_seconds(duration: int) -> None:
    with pytest.raises(errors.InvalidInputError, match="from 2 to 10"):
        api.extend_video("p", duration)


def test_a_body_needs_the_media_its_endpoint_takes() -> None:
    with pytest.raises(ValueError, match="takes no media"):
        replace(api.text_or_image_to_video("p", 6, "auto", "720p", "grok-imagine-video", with_image=False),
                images=media()).body()
    with pytest.raises(ValueError, match="takes image_url"):
        replace(api.text_or_image_to_video("p", 6, "auto", "720p", "grok-imagine-video", with_image=True),
                images=media(2)).body()
    with pytest.raises(ValueError, match="takes reference_image_urls"):
        api.reference_to_video("p", 8, "16:9", "480p").body()
    with pytest.raises(ValueError, match="takes video_url"):
        api.extend_video("p", 6).body()


# --------------------------------------------------------------------------------------------
# The journal
# --------------------------------------------------------------------------------------------


def test_the_journal_knows_the_media_by_content_not_by_url() -> None:
    one = replace(api.reference_to_video("p", 8, "16:9", "480p"), images=media(2))
    assert one.fingerprint() == replace(one, images=media(2, url="https://other/upload.png")).fingerprint()
    assert one.fingerprint() != replace(one, images=media(3)[1:]).fingerprint(), "other images, another request"
    edit = with_video(api.edit_video("p", "auto"))
    assert edit.fingerprint() == with_video(api.edit_video("p", "auto"), url="https://other/v.mp4").fingerprint()
    assert edit.fingerprint() != with_video(api.edit_video("p", "480p")).fingerprint()


# --------------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------------


def t2v(duration: int, resolution: str, model: str = "grok-imagine-video", images: int = 0) -> object:
    request = api.text_or_image_to_video("p", duration, "auto", resolution, model, with_image=images > 0)
    return replace(request, images=media(images))


@pytest.mark.parametrize(("request_", "price", "seconds", "inputs"), [
    (lambda: t2v(6, "720p"), 6 * 0.07, 6, 0),
    (lambda: t2v(10, "480p", images=1), 10 * 0.05 + 0.002, 10, 1),
    (lambda: t2v(5, "480p", "grok-imagine-video-1.5", images=1), 0.40 + 0.01, 5, 1),
    (lambda: t2v(5, "720p", "grok-imagine-video-1.5", images=1), 0.70 + 0.01, 5, 1),
    (lambda: t2v(4, "1080p", "grok-imagine-video-1.5"), 4 * 0.25, 4, 0),
    (lambda: replace(api.reference_to_video("p", 8, "16:9", "720p"), images=media(3)), 8 * 0.07 + 3 * 0.002, 8, 3),
    (lambda: with_video(api.edit_video("p", "auto"), seconds=5.0), 5 * 0.05 + 5 * 0.01, 5, 1),
    (lambda: with_video(api.edit_video("p", "720p"), seconds=12.0), 8 * 0.07 + 8 * 0.01, 8, 1),
    (lambda: with_video(api.extend_video("p", 6), seconds=6.0, size=(854, 480)), 0.36, 6, 1),
    (lambda: with_video(api.extend_video("p", 10), seconds=4.0), 10 * 0.07 + 4 * 0.01, 10, 1),
], ids=["t2v 720p", "i2v 480p + image", "v1.5 i2v 480p (fal's example)", "v1.5 i2v 720p (fal's example)",
        "v1.5 t2v 1080p", "references", "edit auto bills 480p", "edit uses the first 8 s",
        "extend 480p (fal's example)", "extend 720p"])
def test_each_request_prices_itself_per_second(request_: object, price: float, seconds: int, inputs: int) -> None:
    spend = request_().spend()  # type: ignore[operator]
    assert spend.price_usd == pytest.approx(price)
    assert (spend.images, spend.references) == (seconds, inputs), "the ledger counts seconds and inputs"


def test_edit_and_extend_are_priced_only_once_their_input_is_measured() -> None:
    with pytest.raises(ValueError, match="measure it first"):
        api.extend_video("p", 6).spend()


def test_the_fake_bills_what_the_request_prices() -> None:
    for request in (t2v(6, "720p"), t2v(3, "1080p", "grok-imagine-video-1.5"), t2v(2, "480p", images=1),
                    replace(api.reference_to_video("p", 8, "16:9", "720p"), images=media(3))):
        args, problems = validate_video_arguments(request.endpoint, request.body())
        assert not problems and billed_video_price(request.endpoint, args, None) == request.price()
    extend = with_video(api.extend_video("p", 6), seconds=4.0, size=(854, 480))
    args, _ = validate_video_arguments(extend.endpoint, extend.body())
    assert billed_video_price(extend.endpoint, args, (854, 480, 4.0)) == extend.price()


def test_every_endpoint_has_a_rate_for_every_resolution_it_takes() -> None:
    for endpoint, resolutions in api.ENDPOINT_RESOLUTIONS.items():
        assert set(resolutions) <= set(api.VIDEO_RATES[endpoint].per_second), endpoint
    assert set(api.VIDEO_RATES) == set(VIDEO_ENDPOINTS), "a rate for every endpoint fal serves"
