"""`soraplan serve` driven as its users drive it: through its API with gradio_client, and in a browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from soraplan.data import read_video
from soraplan.demo.assets import DEMO_EXAMPLES
from soraplan.demo.evaluate import psnr
from soraplan.provenance import file_sha256

ROOT = Path(__file__).resolve().parents[2]
FIXED = "fixed: crop and resize to height x width"


def call(url, *, prompt, first=None, last=None, num_frames=17, steps=60, **overrides):
    from gradio_client import Client, handle_file

    fields = dict(prompt=prompt, negative_prompt="", first_frame=handle_file(str(first)) if first else None,
                  last_frame=handle_file(str(last)) if last else None, keyframes=[], keyframe_positions="",
                  video=None, mask_type="auto", num_frames=num_frames, resolution_mode=FIXED, height=64, width=64,
                  max_area=4096, steps=steps, guidance_scale=7.5, scheduler="EulerAncestralDiscrete", seed=0,
                  random_seed=False, step_cache=False, cache_threshold=0.4)
    fields.update(overrides)
    return Client(url, verbose=False).predict(**fields, api_name="/generate")


def video_path(output) -> str:
    return output["video"] if isinstance(output, dict) else output


def test_image_to_video_and_transition_through_the_api(server, tmp_path):
    url, _ = server
    first, last = DEMO_EXAMPLES / "transition_first.png", DEMO_EXAMPLES / "transition_last.png"
    video, download, report = call(url, prompt="a red triangle moves to the left on a black background",
                                   first=DEMO_EXAMPLES / "i2v_first.png")
    frames, _ = read_video(video_path(video))
    mp4, sidecar = sorted(download, key=lambda name: Path(name).suffix, reverse=True)  # the video and its record
    assert frames.shape == (17, 64, 64, 3) and Path(mp4).suffix == ".mp4" and Path(sidecar).suffix == ".json"
    assert "i2v: 17 frames of 64x64, seed 0" in report
    assert psnr(frames[0], np.array(Image.open(DEMO_EXAMPLES / "i2v_first.png").convert("RGB"))) >= 22
    record = json.loads(Path(sidecar).read_text())
    assert record["prompt"] == "a red triangle moves to the left on a black background" and record["seed"] == 0
    assert record["mask_type"] == "i2v" and record["sampler"]["steps"] == 60
    assert record["conditions"][0]["sha256"] == file_sha256(DEMO_EXAMPLES / "i2v_first.png")
    # the record is a `soraplan sample` run: it makes the same frames from the command line
    replay = subprocess.run([sys.executable, "-m", "soraplan", "sample", "--from_json", sidecar, "--save_img_path",
                             str(tmp_path), "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert "frames identical to the recorded video" in replay.stdout

    video, _, report = call(url, prompt="an orange square moves up on a gradient gray background", first=first,
                            last=last, step_cache=True)
    frames, _ = read_video(video_path(video))
    assert report.startswith("transition") and "transformer evaluations (step cache)" in report
    assert psnr(frames[-1], np.array(Image.open(last).convert("RGB"))) >= 20


@pytest.mark.slow
def test_a_long_looping_video_through_the_api_reports_its_segments_and_replays(server, tmp_path):
    """33 frames from the 17-frame demo model, looped: three segments (the page's progress says
    "segment i of n"), the record lists them, and `soraplan sample --from_json` makes the same frames."""
    url, _ = server
    video, download, report = call(url, prompt="a red triangle moves to the left on a black background",
                                   first=DEMO_EXAMPLES / "i2v_first.png", num_frames=33, steps=20, loop=True)
    frames, _ = read_video(video_path(video))
    assert frames.shape == (33, 64, 64, 3)
    assert report.startswith("3 segments of up to 17 frames, a loop: 33 frames of 64x64")
    sidecar = next(name for name in download if name.endswith(".json"))
    record = json.loads(Path(sidecar).read_text())
    assert [s["start"] for s in record["long_video"]["segments"]] == [0, 12, 24] and record["long_video"]["loop"]
    assert record["long_video"]["anchor"] is False and record["arguments"]["anchor"] is False  # the model's default
    replay = subprocess.run([sys.executable, "-m", "soraplan", "sample", "--from_json", sidecar, "--save_img_path",
                             str(tmp_path), "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert "frames identical to the recorded video" in replay.stdout


def test_bad_requests_get_a_message_and_the_server_keeps_serving(server, tmp_path):
    from gradio_client.exceptions import AppError

    url, _ = server
    with pytest.raises(AppError, match="frames must be 4k\\+1"):
        call(url, prompt="a red circle", num_frames=10)
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(AppError, match="not an image"):
        call(url, prompt="a red circle", first=fake)
    with pytest.raises(AppError, match="write a prompt"):
        call(url, prompt="")
    video, _, report = call(url, prompt="a green circle moves down on a black background", steps=4,
                            random_seed=True)  # still serving; text-to-video with a drawn seed
    assert report.startswith("t2iv") and read_video(video_path(video))[0].shape[0] == 17


def test_serving_a_distilled_student_uses_its_own_sampler_steps_and_guidance(tmp_path):
    """`soraplan serve --pipeline STUDENT`: the page starts at the student's scheduler (LCM), steps (1)
    and guidance (1, built in); a video comes out in that one step, and guidance > 1 is a message."""
    pytest.importorskip("gradio")
    from soraplan.cli.main import build_parser
    from soraplan.cli.serve import build_server
    from soraplan.demo.assets import demo_student_path
    from soraplan.ui.requests import Request, RequestError

    argv = ["serve", "--pipeline", str(demo_student_path()), "--device", "cpu", "--output_dir", str(tmp_path)]
    args = build_parser().parse_args(argv)
    args.argv = argv
    app, generator = build_server(args)
    values = {block.label: block.value for block in app.blocks.values() if hasattr(block, "value")}
    assert (values["Scheduler"], values["Sampling steps"], values["Guidance scale"]) == ("LCM", 1, 1.0)
    first = str(DEMO_EXAMPLES / "i2v_first.png")
    path, report = generator.generate(Request("a red triangle moves to the left on a black background",
                                              first_frame=first, steps=values["Sampling steps"],
                                              guidance_scale=values["Guidance scale"], height=64, width=64,
                                              resolution_mode=FIXED, num_frames=17))
    assert "i2v: 17 frames of 64x64" in report and "LCM 1 step," in report
    frames, _ = read_video(path)
    assert psnr(frames[0], np.array(Image.open(first).convert("RGB"))) >= 22
    with pytest.raises(RequestError, match="guidance-distilled"):
        generator.generate(Request("a red circle", first_frame=first, steps=4, guidance_scale=7.5, num_frames=17,
                                   height=64, width=64, resolution_mode=FIXED))
    app.close()


@pytest.mark.slow  # generations and a replay: about a minute
def test_serving_lora_adapters_the_page_picks_from(tmp_path):
    """`soraplan serve --lora A --lora B:0.5`: both are offered and on by default; a request picks some
    (or none: the base model's video exactly) and a strength; the record replays through `soraplan sample`."""
    pytest.importorskip("gradio")
    from soraplan.cli.main import build_parser
    from soraplan.cli.serve import build_server
    from soraplan.data.video_io import write_video
    from soraplan.demo.assets import demo_pipeline_path
    from soraplan.pipelines import load_pipeline
    from soraplan.ui.requests import Request, RequestError

    from ..pipelines.test_lora import make_adapter

    transformer = load_pipeline(str(demo_pipeline_path())).transformer
    style = make_adapter(tmp_path / "style", seed=1, transformer=transformer)
    motion = make_adapter(tmp_path / "motion", seed=2, rank=2, transformer=transformer)
    argv = ["serve", "--lora", str(style), "--lora", f"{motion}:0.5", "--device", "cpu", "--output_dir",
            str(tmp_path / "out")]
    args = build_parser().parse_args(argv)
    args.argv = argv
    app, generator = build_server(args)
    values = {block.label: block.value for block in app.blocks.values() if hasattr(block, "value")}
    assert values["LoRA adapters (each at the scale it was served with)"] == ["style", "motion"]
    first = str(DEMO_EXAMPLES / "i2v_first.png")
    ask = dict(prompt="a red triangle moves to the left on a black background", first_frame=first, steps=8,
               guidance_scale=3.0, height=64, width=64, resolution_mode=FIXED, num_frames=17)
    videos = {}
    picks = {"both": dict(), "none": dict(loras=[]), "style": dict(loras=["style"], lora_strength=0.5)}
    for name, picked in picks.items():
        path, report = generator.generate(Request(**ask, **picked))
        videos[name] = (path, read_video(path)[0])
        assert ("LoRA" in report) == (name != "none"), report
    assert "LoRA style x 1, motion x 0.5" in generator.generate(Request(**ask))[1]
    base = load_pipeline(str(demo_pipeline_path()))
    expected = base(ask["prompt"], conditions=[first], num_frames=17, height=64, width=64, crop_for_hw=True,
                    num_inference_steps=8, guidance_scale=3.0, generator=torch.Generator().manual_seed(0)).videos[0]
    write_video(tmp_path / "expected.mp4", expected, fps=8)  # the same encoder the app writes with
    assert np.array_equal(videos["none"][1], read_video(tmp_path / "expected.mp4")[0])  # none: the base model
    assert not np.array_equal(videos["both"][1], videos["none"][1])
    record = json.loads(videos["style"][0].with_suffix(".json").read_text())
    assert [(Path(a["path"]).parent.name, a["scale"]) for a in record["models"]["lora"]] == [("style", 0.5)]
    replay = subprocess.run([sys.executable, "-m", "soraplan", "sample", "--from_json",
                             str(videos["style"][0].with_suffix(".json")), "--save_img_path", str(tmp_path / "replay"),
                             "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert "frames identical to the recorded video" in replay.stdout
    with pytest.raises(RequestError, match="unknown LoRA adapter 'other'; served: style, motion"):
        generator.generate(Request(**ask, loras=["other"]))
    app.close()


def test_one_generation_at_a_time_and_a_bounded_queue(server):
    """The fixture serves with --max_queue 4: with one running, a burst of requests beyond the queue's
    room is turned away with gradio's "queue is full" message, the rest all finish."""
    from gradio_client import Client

    url, _ = server
    client = Client(url, verbose=False)
    fields = dict(prompt="a blue circle moves up on a black background", negative_prompt="", first_frame=None,
                  last_frame=None, keyframes=[], keyframe_positions="", video=None, mask_type="auto", num_frames=17,
                  resolution_mode=FIXED, height=64, width=64, max_area=4096, steps=40, guidance_scale=7.5,
                  scheduler="EulerAncestralDiscrete", seed=0, random_seed=False, step_cache=False,
                  cache_threshold=0.4)
    jobs = [client.submit(**fields, api_name="/generate") for _ in range(8)]
    finished, refused = 0, 0
    for job in jobs:
        try:
            job.result(timeout=300)
            finished += 1
        except Exception as error:  # gradio_client raises its own error types for a full queue
            assert "queue is full" in str(error).lower(), error
            refused += 1
    assert refused >= 1 and finished >= 5  # 1 running + 4 waiting (+ any that finished meanwhile)


@pytest.mark.browser
def test_the_page_in_headless_chromium(server, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make test-ui` installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (make test-ui installs it)")
    from playwright.sync_api import sync_playwright

    url, _ = server
    screenshot = ROOT / "outputs" / "test-ui" / "serve.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url, wait_until="networkidle")
            page.locator("input[type=file]").first.set_input_files(str(DEMO_EXAMPLES / "i2v_first.png"))
            page.get_by_label("Prompt").fill("a red triangle moves to the left on a black background")
            page.get_by_role("button", name="Generate").click()
            page.locator("#result-video video").wait_for(state="visible", timeout=180_000)
            page.locator("#report").get_by_text("i2v: 17 frames").wait_for(timeout=30_000)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
