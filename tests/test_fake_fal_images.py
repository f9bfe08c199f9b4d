"""The fake fal's image endpoints (`fake_fal.images`): xAI's size table, fal's validation of a submit, the formats,
sync mode, uploads and ``auto``'s shape, and Grok Imagine 2.0's endpoints."""

from __future__ import annotations

import base64
import io

import httpx
from fake_fal import EDIT_ENDPOINTS, ENDPOINTS, TEXT_ENDPOINTS, V2_ENDPOINTS, FakeFal, fake_image_size
from fake_fal.plain_client import submit, wait_completed
from PIL import Image

TEXT = "xai/grok-imagine-image"
EDIT = "xai/grok-imagine-image/edit"
V2_TEXT = "xai/grok-imagine-image/v2.0/text-to-image"
V2_EDIT = "xai/grok-imagine-image/v2.0/edit"


def test_size_table_follows_xai_at_1k_and_doubles_at_2k() -> None:
    assert fake_image_size("16:9", "1k") == (1408, 768)
    assert fake_image_size("9:16", "1k") == (768, 1408)
    assert fake_image_size("1:1", "2k") == (2048, 2048)
    assert fake_image_size("9:19.5", "1k") == (576, 1248)
    assert fake_image_size("20:9", "2k") == (2560, 1152)
    assert fake_image_size("auto", "1k") == (1024, 1024)
    for ratio in ("2:1", "4:3", "3:2", "9:20", "1:2"):
        w, h = fake_image_size(ratio, "1k")
        assert w % 8 == 0 and h % 8 == 0 and fake_image_size(ratio, "2k") == (2 * w, 2 * h)


def test_validation(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    def error(response: httpx.Response) -> tuple[object, str]:
        assert response.status_code == 422
        first = response.json()["detail"][0]
        return first["loc"][-1], first["type"]

    assert error(submit(fal_http, seed=3)) == ("seed", "extra_forbidden")
    assert error(fal_http.post(f"/{TEXT}", json={})) == ("prompt", "missing")
    assert error(submit(fal_http, prompt="")) == ("prompt", "string_too_short")
    assert error(submit(fal_http, num_images=5)) == ("num_images", "less_than_equal")
    assert error(submit(fal_http, aspect_ratio="auto")) == ("aspect_ratio", "literal_error")
    assert error(submit(fal_http, resolution="4k")) == ("resolution", "literal_error")
    assert error(submit(fal_http, EDIT)) == ("image_urls", "missing")
    assert error(submit(fal_http, EDIT, image_urls=["ftp://x"])) == (0, "value_error")
    assert submit(fal_http, "xai/other").status_code == 404
    assert not fake_fal.submits and not fake_fal.jobs
    ok = submit(fal_http, "xai/grok-imagine-image/quality/edit", image_urls=["https://example.com/a.png"])
    assert ok.status_code == 200
    assert f"/{TEXT}/requests/" in ok.json()["response_url"]


def test_sync_mode_and_formats(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    handle = submit(fal_http, sync_mode=True, output_format="webp", aspect_ratio="9:16").json()
    wait_completed(fal_http, handle["status_url"])
    (image,) = fal_http.get(handle["response_url"]).json()["images"]
    assert image["url"].startswith("data:image/webp;base64,")
    pil = Image.open(io.BytesIO(base64.b64decode(image["url"].partition(",")[2])))
    assert pil.format == "WEBP" and pil.size == fake_image_size("9:16", "1k")


def test_upload_and_auto_aspect(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    token = fal_http.post("/storage/auth/token", params={"storage_type": "fal-cdn-v3"}).json()
    assert token["token_type"] == "Bearer" and token["base_url"] == fake_fal.url
    buffer = io.BytesIO()
    Image.new("RGB", (300, 600), "blue").save(buffer, "PNG")
    upload = httpx.post(
        f"{token['base_url']}/files/upload",
        content=buffer.getvalue(),
        headers={
            "Authorization": f"Bearer {token['token']}",
            "Content-Type": "image/png",
            "X-Fal-File-Name": "in put.png",
        },
    )
    assert upload.status_code == 200
    access_url = upload.json()["access_url"]
    assert httpx.get(access_url).content == buffer.getvalue()
    assert fake_fal.uploads[0]["file_name"] == "in put.png" and fake_fal.uploads[0]["size"] == len(buffer.getvalue())
    assert httpx.post(f"{fake_fal.url}/files/upload", content=b"x").status_code == 401

    handle = submit(fal_http, EDIT, image_urls=[access_url]).json()
    wait_completed(fal_http, handle["status_url"])
    (image,) = fal_http.get(handle["response_url"]).json()["images"]
    assert (image["width"], image["height"]) == (512, 1024)


def test_a_result_image_is_an_input_until_its_file_expires(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.charge_balance = True
    made = submit(fal_http, aspect_ratio="2:1").json()
    wait_completed(fal_http, made["status_url"])
    (image,) = fal_http.get(made["response_url"]).json()["images"]
    chained = submit(fal_http, EDIT, image_urls=[image["url"]]).json()  # auto: the shape of fal's own file
    wait_completed(fal_http, chained["status_url"])
    assert fal_http.get(chained["response_url"]).json()["images"][0]["width"] == 1024

    fake_fal.expire_files()
    assert httpx.get(image["url"]).status_code == 404
    balance = fake_fal.balance_usd
    refused = submit(fal_http, EDIT, image_urls=[image["url"]]).json()
    assert wait_completed(fal_http, refused["status_url"])["error_type"] == "file_download_error"
    answer = fal_http.get(refused["response_url"])
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "image_urls"]
    assert answer.json()["detail"][0]["type"] == "file_download_error" and fake_fal.balance_usd == balance

    fake_fal.faults.update({"inputs_unreadable": True})
    foreign = submit(fal_http, EDIT, image_urls=["https://example.com/a.png"]).json()
    assert wait_completed(fal_http, foreign["status_url"])["error_type"] == "file_download_error"


def test_photo_like_images_carry_a_photographs_detail(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    sizes = []
    for photo_like in (False, True):
        fake_fal.faults.update({"photo_like_images": photo_like})
        handle = submit(fal_http).json()
        wait_completed(fal_http, handle["status_url"])
        (image,) = fal_http.get(handle["response_url"]).json()["images"]
        sizes.append(len(httpx.get(image["url"]).content))
    assert sizes[1] > 10 * sizes[0] and sizes[1] > 200_000


def test_grok_imagine_2_endpoints(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    assert V2_ENDPOINTS == (V2_TEXT, V2_EDIT)
    assert isinstance(ENDPOINTS, tuple) and isinstance(TEXT_ENDPOINTS, tuple) and isinstance(EDIT_ENDPOINTS, tuple)
    assert ENDPOINTS[:4] == (TEXT, f"{TEXT}/quality/text-to-image", EDIT, f"{TEXT}/quality/edit")
    assert ENDPOINTS[4:] == V2_ENDPOINTS and TEXT_ENDPOINTS[-1] == V2_TEXT and EDIT_ENDPOINTS[-1] == V2_EDIT

    def error(response: httpx.Response) -> tuple[object, str]:
        assert response.status_code == 422
        first = response.json()["detail"][0]
        return first["loc"][-1], first["type"]

    urls = ["https://example.com/a.png"]
    assert error(submit(fal_http, V2_TEXT, quality="high")) == ("quality", "literal_error")
    assert error(submit(fal_http, TEXT, quality="low")) == ("quality", "extra_forbidden")
    assert error(submit(fal_http, EDIT, image_urls=urls, quality="low")) == ("quality", "extra_forbidden")
    assert error(submit(fal_http, f"{TEXT}/quality/text-to-image", quality="medium")) == ("quality", "extra_forbidden")
    assert error(submit(fal_http, V2_TEXT, seed=1)) == ("seed", "extra_forbidden")
    too_long = submit(fal_http, V2_TEXT, prompt="x" * 8001)
    assert too_long.json() == {
        "detail": [
            {"loc": ["body", "prompt"], "msg": "String should have at most 8000 characters", "type": "string_too_long"}
        ]
    }
    assert error(submit(fal_http, V2_EDIT, prompt="x" * 8001, image_urls=urls)) == ("prompt", "string_too_long")
    assert error(submit(fal_http, V2_EDIT)) == ("image_urls", "missing")
    assert error(submit(fal_http, V2_EDIT, image_urls=urls * 4)) == ("image_urls", "too_long")
    assert error(submit(fal_http, V2_TEXT, aspect_ratio="auto")) == ("aspect_ratio", "literal_error")
    assert not fake_fal.jobs

    assert error(submit(fal_http, TEXT, prompt="x" * 8001)) == ("prompt", "string_too_long")  # every endpoint's limit
    assert error(submit(fal_http, EDIT, prompt="x" * 8001, image_urls=urls)) == ("prompt", "string_too_long")
    text = submit(fal_http, V2_TEXT, prompt="y" * 8000).json()
    low = submit(fal_http, V2_TEXT, quality="low", aspect_ratio="16:9").json()
    edit = submit(fal_http, V2_EDIT, image_urls=urls * 3).json()
    for handle in (text, low, edit):
        assert handle["status_url"].startswith(f"{fake_fal.url}/{TEXT}/requests/")
    jobs = [fake_fal.jobs[h["request_id"]] for h in (text, low, edit)]
    assert [(j.endpoint, j.quality, j.aspect_ratio) for j in jobs] == [
        (V2_TEXT, "medium", "1:1"), (V2_TEXT, "low", "16:9"), (V2_EDIT, "medium", "auto")
    ]
    assert fake_fal.jobs[submit(fal_http, TEXT).json()["request_id"]].quality is None  # the older endpoints have none
    wait_completed(fal_http, low["status_url"])
    (image,) = fal_http.get(low["response_url"]).json()["images"]
    assert (image["width"], image["height"]) == fake_image_size("16:9", "1k")
