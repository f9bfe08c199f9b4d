"""The pack's videos with the real ComfyUI's VIDEO types (`comfy_api`), in ComfyUI's own Python: a result wrapped
by the pack is a VideoFromFile that Save Video writes (with the prompt in its metadata) and Get Video Components
reads, whose last frame is the one the pack returns; Load Video's and Create Video's VIDEOs become MP4 files for
fal; and the preview a node returns is the one Save Video returns.

Needs COMFYUI_DIR (see README: e2e tests). Runs a script in ComfyUI's venv, with no server.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from comfy_host import PACK_ROOT

SCRIPT = textwrap.dedent('''
    import json, sys
    from fractions import Fraction
    from pathlib import Path
    comfy_dir, tests_dir, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    sys.path[:0] = [comfy_dir, tests_dir]
    sys.argv[1:] = ["--cpu"]  # comfy_api imports ComfyUI's server, which reads its command line
    import comfy.options
    comfy.options.enable_args_parsing()

    import av, torch
    from comfy_like import pack_module
    from fake_fal.video import LAST_RGB, write_mp4
    from comfy_api.latest import Input, InputImpl, Types, io, ui

    video_io = pack_module("media.video")
    source = work / "result.mp4"
    write_mp4(str(source), 320, 180, 2.0)
    url = "https://v3.fal.media/files/result.mp4"
    video = video_io.as_comfy_video(source, url)
    out = {"is_video_from_file": isinstance(video, InputImpl.VideoFromFile),
           "is_video_input": isinstance(video, Input.Video),
           "fal_url": video_io.fal_url_of(video),
           "load_video_url": video_io.fal_url_of(InputImpl.VideoFromFile(str(source))),
           "dimensions": list(video.get_dimensions()), "duration": video.get_duration()}

    components = video.get_components()  # what Get Video Components outputs
    out["frames"] = list(components.images.shape)
    out["fps"] = float(components.frame_rate)
    out["audio"] = components.audio is not None
    last = video_io.read_video(source)[1]
    out["last_frame_matches"] = bool(torch.allclose(last[0], components.images[-1], atol=1.5 / 255))
    out["last_frame_shape"] = list(last.shape)

    saved = work / "saved.mp4"  # what Save Video does with its widget values (0.3.64 passes the strings)
    video.save_to(str(saved), format="auto", codec="auto", metadata={"prompt": {"1": {"class_type": "X"}},
                                                                     "workflow": {"grok": "rid-1"}})
    with av.open(str(saved)) as container:
        out["saved_metadata"] = sorted(k for k in container.metadata if k in ("prompt", "workflow"))
        out["saved_frames"] = sum(1 for _ in container.decode(video=0))
    enum_saved = work / "enum.mp4"  # newer Save Video passes the enums
    video.save_to(str(enum_saved), format=Types.VideoContainer.MP4, codec=Types.VideoCodec.H264)
    out["enum_saved_codec"] = video_io.probe_video(enum_saved).codec

    loaded = video_io.mp4_for_upload(InputImpl.VideoFromFile(str(source)), work / "up", field="video")
    with av.open(str(source)) as a, av.open(str(loaded.path)) as b:
        out["load_video_copied"] = [bytes(p) for p in a.demux(video=0)] == [bytes(p) for p in b.demux(video=0)]
    frames = torch.rand(10, 64, 96, 3)
    created = InputImpl.VideoFromComponents(Types.VideoComponents(images=frames, frame_rate=Fraction(24)))
    encoded = video_io.mp4_for_upload(created, work / "up", field="video")
    out["create_video"] = [encoded.info.codec, encoded.info.width, encoded.info.height, encoded.info.frames]
    out["create_video_seconds"] = video_io.video_seconds(created, "video")

    preview = ui.PreviewVideo([ui.SavedResult("a.mp4", "grok_imagine", io.FolderType.temp)]).as_dict()
    out["preview"] = json.loads(json.dumps(preview))
    print("RESULT " + json.dumps(out))
''')


def test_the_pack_s_videos_work_with_the_hosts_video_types(comfyui: tuple[Path, Path], tmp_path: Path) -> None:
    comfy_dir, python = comfyui
    script = tmp_path / "check_video_types.py"
    script.write_text(SCRIPT, encoding="utf-8")
    done = subprocess.run([str(python), str(script), str(comfy_dir), str(PACK_ROOT / "tests"), str(tmp_path)],  # noqa: S603
                          cwd=comfy_dir, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["is_video_from_file"] and out["is_video_input"]
    assert out["fal_url"] == "https://v3.fal.media/files/result.mp4" and out["load_video_url"] is None
    assert out["dimensions"] == [320, 180] and out["duration"] == pytest.approx(2.0, abs=0.05)
    assert out["frames"] == [48, 180, 320, 3] and out["fps"] == 24 and out["audio"]
    assert out["last_frame_matches"] and out["last_frame_shape"] == [1, 180, 320, 3]
    assert out["saved_metadata"] == ["prompt", "workflow"] and out["saved_frames"] == 48
    assert out["enum_saved_codec"] == "h264"
    assert out["load_video_copied"]
    assert out["create_video"] == ["h264", 96, 64, 10] and out["create_video_seconds"] == pytest.approx(10 / 24)
    assert out["preview"] == {"images": [{"filename": "a.mp4", "subfolder": "grok_imagine", "type": "temp"}],
                              "animated": [True]}
