"""The training data format and the reference's filters, bucketing and sampling."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from collections import Counter

import pytest
import torch

from soraplan.data.annotations import (
    DataConfig,
    drop_small_buckets,
    load_training_samples,
    longest_valid_length,
    read_data_file,
    select_samples,
)
from soraplan.data.video_dataset import (
    DEFAULT_VIDEO_TEXT,
    BucketBatchSampler,
    VideoTextDataset,
    collate,
)

from ..conftest import make_videos, write_image


def video(path="v.mp4", h=352, w=640, frames=200, fps=18.0, cap="a cat", **extra):
    return {"path": path, "cap": cap, "resolution": {"height": h, "width": w}, "num_frames": frames, "fps": fps, **extra}


def select(items, **config):
    return select_samples([(__import__("pathlib").Path("/data"), items)], DataConfig(**config))


def test_filters_and_their_reasons():
    items = [
        video(),  # kept: 93 frames at 352x640
        video(cap=None), video(cap=[]),  # no caption
        {"path": "x.mp4", "cap": "c", "num_frames": 100, "fps": 18},  # no resolution
        video(h=100, w=640),  # aspect 0.16
        video(h=64, w=64),  # too small (< max_hxw / 4)
        video(frames=93 * 6),  # too long (> 5x what a sample needs)
        video(frames=40),  # 40 -> 37 frames (4k+1), kept
        video(frames=20),  # shorter than the 29-frame minimum
        video(path="x.txt"),  # unknown type
        {"path": "i.jpg", "cap": "img", "resolution": {"height": 480, "width": 640}},  # image
    ]
    selection = select(items)
    assert selection.dropped == Counter({"no caption": 2, "no resolution": 1, "aspect ratio": 1, "too small": 1,
                                         "too long": 1, "too short": 1, "unknown file type": 1})
    assert sorted(s.bucket for s in selection.samples) == [(1, 384, 544), (37, 352, 640), (93, 352, 640)]


def test_fps_resampling_and_random_window():
    (sample,) = select([video(frames=200, fps=36.0)], num_frames=29).samples
    steps = {b - a for a, b in zip(sample.frame_indices, sample.frame_indices[1:])}
    assert len(sample.frame_indices) == 29 and steps == {2}  # 36 fps read every 2nd frame for 18 fps
    starts = {select([video(frames=120)], num_frames=29).samples[0].frame_indices[0] for _ in range(3)}
    assert len(starts) == 1  # deterministic for a seed (all ranks agree)


def test_frame_rules():
    config = DataConfig(num_frames=93)
    assert longest_valid_length(93, config) == 93 and longest_valid_length(92, config) == 89
    assert longest_valid_length(28, config) is None
    assert longest_valid_length(93, DataConfig(num_frames=93, sp_size=8)) == 93  # 24 latent frames
    assert longest_valid_length(92, DataConfig(num_frames=93, sp_size=8)) == 61  # 16 latent frames
    assert select([video(frames=40)], drop_short_ratio=1.0).dropped == Counter({"too short": 1})
    with pytest.raises(ValueError, match="4k\\+1"):
        DataConfig(num_frames=30)


def test_force_resolution_and_cut():
    (sample,) = select([video(h=720, w=1280, cut=[10, 300])], force_resolution=True, max_height=320,
                       max_width=480).samples
    assert (sample.height, sample.width, sample.resize_to) == (320, 480, None)
    assert sample.frame_indices[0] >= 10
    assert select([video(h=1280, w=720)], force_resolution=True).dropped == Counter({"aspect ratio": 1})


def test_data_file_formats(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([video(path="a.mp4")]))
    with open(tmp_path / "b.pkl", "wb") as f:
        pickle.dump([video(path="b.mp4"), video(path="c.mp4")], f)
    (tmp_path / "data.txt").write_text(f"{tmp_path},a.json\n\n{tmp_path}/sub,{tmp_path / 'b.pkl'}\n")
    sources = read_data_file(tmp_path / "data.txt")
    assert sources[1] == (tmp_path / "sub", tmp_path / "b.pkl")
    selection = load_training_samples(tmp_path / "data.txt", DataConfig())
    assert [s.path.name for s in selection.samples] == ["a.mp4", "b.mp4", "c.mp4"]
    assert len(drop_small_buckets(selection, 4).samples) == 0
    (tmp_path / "bad.txt").write_text("only-one-field\n")
    with pytest.raises(ValueError, match="DATA_ROOT,ANNOTATION_FILE"):
        read_data_file(tmp_path / "bad.txt")


def test_bucket_sampler_batches_one_shape_and_splits_ranks():
    buckets = [(29, 32, 32)] * 10 + [(1, 64, 32)] * 7 + [(33, 32, 64)] * 5
    ranks = [BucketBatchSampler(buckets, batch_size=2, num_replicas=2, rank=r, seed=3) for r in range(2)]
    batches = [list(s) for s in ranks]
    assert len(batches[0]) == len(batches[1]) == 2 + 1 + 1  # floor(10/4) + floor(7/4) + floor(5/4)
    for local in batches:
        assert all(len({buckets[i] for i in batch}) == 1 and len(batch) == 2 for batch in local)
    seen = [i for local in batches for batch in local for i in batch]
    assert len(seen) == len(set(seen))  # ranks never share a sample in an epoch
    for s in ranks:
        s.set_epoch(1)
    assert [list(s) for s in ranks] != batches  # reshuffled each epoch
    ranks[0].set_epoch(1, start_batch=3)
    assert len(list(ranks[0])) == 1 == len(ranks[0])


def test_dataset_reads_real_files_and_skips_corrupt(tmp_path):
    make_videos(tmp_path, 3, frames=20, size=64)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 50)
    write_image(tmp_path / "still.png", 64, 96)
    items = [video(path=f"clip{i:03d}.mp4", h=64, w=64, frames=20, fps=8, cap=["x", "y"]) for i in range(3)]
    items += [video(path="broken.mp4", h=64, w=64, frames=20, fps=8),
              {"path": "still.png", "cap": "a still", "resolution": {"height": 64, "width": 96}}]
    selection = select_samples([(tmp_path, items)], DataConfig(num_frames=9, max_height=64, max_width=64,
                                                               train_fps=8, min_num_frames=5))
    dataset = VideoTextDataset(selection.samples, cfg=0.0)
    shapes = Counter(tuple(dataset[i]["video"].shape) for i in range(len(dataset)))
    assert shapes == Counter({(3, 9, 64, 64): 4, (3, 1, 32, 64): 1})
    assert len(dataset.failed) == 1  # the broken file, replaced by a same-bucket sample
    assert all(dataset[i]["caption"] in ("x", "y") for i in range(3))
    batch = collate([dataset[0], dataset[1]])
    assert batch["video"].shape == (2, 3, 9, 64, 64) and batch["video"].min() >= -1

    dropped = VideoTextDataset(selection.samples[:1], cfg=1.0, default_text_ratio=1.0)
    assert dropped[0]["caption"] == DEFAULT_VIDEO_TEXT
    rates = VideoTextDataset(selection.samples[:1], cfg=0.5, default_text_ratio=0.5)
    captions = Counter()
    for epoch in range(400):
        rates.set_epoch(epoch)
        captions[rates.caption(rates.samples[0], __import__("random").Random(epoch))] += 1
    assert captions[""] / 400 == pytest.approx(0.25, abs=0.07)


def test_dataset_anchor_is_the_first_frame_of_the_clips_video(tmp_path):
    """With ``anchors``, an item also holds its video's (or cut's) first frame, read and resized as the
    clip's frames are: for a clip cut from later in the video, a frame from before the clip."""
    from soraplan.data.video_io import read_video

    (path,) = make_videos(tmp_path, 1, frames=40, size=48)
    frames, _ = read_video(path)
    items = [video(path=path.name, h=48, w=48, frames=40, fps=8, cap="x"),
             video(path=path.name, h=48, w=48, frames=40, fps=8, cap="x", cut=[6, 40])]
    config = DataConfig(num_frames=9, max_height=32, max_width=32, hw_stride=16, train_fps=8, min_num_frames=9,
                        force_resolution=True)
    selection = select_samples([(tmp_path, items)], config, seed=3)
    whole, cut = selection.samples
    assert (whole.first_source_frame, cut.first_source_frame) == (0, 6)
    assert whole.frame_indices[0] > 0 and cut.frame_indices[0] >= 6  # windows from later in the video
    anchored = VideoTextDataset(selection.samples, cfg=0.0, anchors=True)
    plain = VideoTextDataset(selection.samples, cfg=0.0)
    for index, sample in enumerate(selection.samples):
        item = anchored[index]
        assert torch.equal(item["video"], plain[index]["video"]) and "anchor" not in plain[index]
        # the anchor is the source frame, cropped and resized as a one-frame clip of that frame is
        alone = VideoTextDataset([dataclasses.replace(sample, frame_indices=[sample.first_source_frame])], cfg=0.0)
        assert torch.equal(item["anchor"], alone[0]["video"][:, 0])
        nearest = min(range(len(frames)), key=lambda t: float(
            (torch.from_numpy(frames[t]).float().permute(2, 0, 1)[None] / 127.5 - 1).sub(
                torch.nn.functional.interpolate(item["anchor"][None], size=(48, 48), mode="bilinear")).abs().mean()))
        assert nearest == sample.first_source_frame
    batch = collate([anchored[0], anchored[1]])
    assert batch["anchor"].shape == (2, 3, 32, 32) and "anchor" not in collate([plain[0], plain[1]])


def test_annotate_and_check_commands(tmp_path):
    videos = tmp_path / "videos"
    for i, path in enumerate(make_videos(videos, 3, frames=20, size=64)):
        if i < 2:
            path.with_suffix(".txt").write_text(f"caption {i}\n")
    ann = tmp_path / "ann.json"
    run = lambda *a: subprocess.run([sys.executable, "-m", "soraplan", "data", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    result = run("annotate", videos, "-o", ann)
    assert result.returncode == 0 and "skipped clip002.mp4: no caption file" in result.stdout
    items = json.loads(ann.read_text())
    assert items[0]["num_frames"] == 20 and items[0]["fps"] == 8.0 and items[0]["resolution"]["height"] == 64
    (tmp_path / "data.txt").write_text(f"{videos},{ann}\n")
    check = run("check", tmp_path / "data.txt", "--num_frames", "17", "--max_height", "64", "--max_width", "64",
                "--train_fps", "8", "--min_num_frames", "9")
    assert check.returncode == 0 and "bucket 17x64x64: 2" in check.stdout
    missing = run("check", tmp_path / "nope.txt")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


@pytest.mark.dist  # two processes: `make test-dist`
def test_annotate_sharded_over_two_processes_writes_what_one_process_writes(tmp_path):
    """torchrun with 2 processes (gloo): each probes every other file, rank 0 merges; real mp4s, an
    image, a corrupt video and a clip without a caption, and the same file as one process writes."""
    import os

    folder = tmp_path / "media"
    for index, path in enumerate(make_videos(folder / "clips", 5, frames=9, size=32, seed=3)):
        if index != 3:
            path.with_suffix(".txt").write_text(f"clip {index}\nanother caption {index}\n")
    write_image(folder / "still.png", 48, 32)
    (folder / "still.txt").write_text("a still picture\n")
    (folder / "broken.mp4").write_bytes(b"\x00" * 100)
    (folder / "broken.txt").write_text("a corrupt file\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "soraplan", "data", "annotate", folder, "-o", tmp_path / "one.json"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "soraplan",
                          "data", "annotate", folder, "-o", tmp_path / "two.json"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "probed by 2 processes" in two.stdout and "2 of 7 files skipped" in two.stdout
    assert (tmp_path / "two.json").read_text() == (tmp_path / "one.json").read_text()
    items = json.loads((tmp_path / "one.json").read_text())
    assert [item["path"] for item in items] == ["clips/clip000.mp4", "clips/clip001.mp4", "clips/clip002.mp4",
                                                "clips/clip004.mp4", "still.png"]
    assert "skipped broken.mp4: unreadable" in two.stdout and "skipped clips/clip003.mp4: no caption" in two.stdout
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.slow  # three runs and a torchrun launch: about 40 s, and make test is near its budget
def test_check_verify_reads_every_sample_and_shards_over_two_processes(tmp_path):
    """`data check --verify`: the kept samples read as training reads them, the unreadable ones listed
    (a truncated mp4 and a deleted one that the annotation still lists), exit 1; under torchrun with 2
    processes each reads every other sample and rank 0 prints the same report."""
    import os

    folder = tmp_path / "media"
    paths = make_videos(folder, 6, frames=12, size=32, seed=4)
    for path in paths:
        path.with_suffix(".txt").write_text(f"caption of {path.stem}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ann = tmp_path / "ann.json"
    made = subprocess.run([sys.executable, "-m", "soraplan", "data", "annotate", folder, "-o", ann],
                          capture_output=True, text=True, timeout=300, env=env)
    assert made.returncode == 0, made.stderr[-2000:]
    (tmp_path / "data.txt").write_text(f"{folder},{ann}\n")
    clean = ["data", "check", tmp_path / "data.txt", "--num_frames", "9", "--max_height", "32", "--max_width", "32",
             "--train_fps", "8", "--min_num_frames", "9", "--hw_stride", "16", "--verify"]
    ok = subprocess.run([sys.executable, "-m", "soraplan", *map(str, clean)], capture_output=True, text=True,
                        timeout=300, env=env)
    assert ok.returncode == 0 and "read 6 samples as training reads them: 0 unreadable" in ok.stdout, ok.stdout

    paths[1].write_bytes(paths[1].read_bytes()[:600])  # truncated after annotation
    paths[4].unlink()  # gone after annotation
    one = subprocess.run([sys.executable, "-m", "soraplan", *map(str, clean)], capture_output=True, text=True,
                         timeout=300, env=env)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "soraplan",
                          *map(str, clean)], capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 1, one.stderr[-2000:]
    assert two.returncode != 0, two.stderr[-2000:]
    unreadable = [line.split(":")[0] for line in one.stdout.splitlines() if line.startswith("unreadable ")]
    assert unreadable == [f"unreadable {paths[1]}", f"unreadable {paths[4]}"], one.stdout
    assert "read 6 samples as training reads them: 2 unreadable" in one.stdout
    assert "read 6 samples as training reads them by 2 processes: 2 unreadable" in two.stdout
    strip = [line for line in two.stdout.splitlines() if not line.startswith("read ")]
    assert strip == [line for line in one.stdout.splitlines() if not line.startswith("read ")]
