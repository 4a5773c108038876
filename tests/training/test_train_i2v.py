"""`soraplan train` (I2V) end to end with tiny real components and real mp4 files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from soraplan.masks import MaskType
from safetensors.torch import load_file

from ..conftest import build_tiny_pipeline, make_videos

ROOT = Path(__file__).resolve().parents[2]


def annotate(folder: Path, paths, frames=12, size=32):
    items = [{"path": p.name, "cap": [f"clip {i}"], "resolution": {"height": size, "width": size},
              "num_frames": frames, "fps": 8.0} for i, p in enumerate(paths)]
    (folder / "ann.json").write_text(json.dumps(items))
    (folder / "data.txt").write_text(f"{folder},{folder / 'ann.json'}\n")
    return folder / "data.txt"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("i2v")
    pipe = build_tiny_pipeline()
    pipe.vae.save_pretrained(root / "vae")
    pipe.text_encoder.save_pretrained(root / "t5")
    pipe.tokenizer.save_pretrained(root / "t5")
    pipe.transformer.save_pretrained(root / "model")
    pipe.save_pretrained(root / "pipeline")  # the same encoder and tokenizer in a pipeline's layout
    annotate(root / "train", make_videos(root / "train", 8, frames=12, size=32, seed=0))
    annotate(root / "val", make_videos(root / "val", 3, frames=12, size=32, seed=5))
    return root


def common(assets, out, *extra):
    return ["--data", assets / "train" / "data.txt", "--output_dir", out, "--model", assets / "model",
            "--ae_path", assets / "vae", "--text_encoder_name_1", assets / "t5",
            "--mask_config", ROOT / "scripts/train_configs/mask_config.yaml", "--num_frames", 9, "--max_height", 32,
            "--max_width", 32, "--hw_stride", 16, "--train_fps", 8, "--min_num_frames", 9, "--model_max_length", 32,
            "--learning_rate", 1e-3, *extra]


def train(*args, launcher=None, env=None, cwd=None):
    command = (launcher or [sys.executable, "-m"]) + ["soraplan", "train", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
                          cwd=cwd)


def records(folder, key):
    """{step: value} from metrics.jsonl; a step logged again after a resume keeps its last value."""
    found = {}
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if key in record:
            found[record["step"]] = record[key]
    return found


def kill_when(command: list, marker: Path, env: dict) -> None:
    """Run ``command`` and kill -9 it as soon as ``marker`` exists (a checkpoint folder)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    deadline = time.time() + 300
    while not marker.is_dir() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_training_lowers_validation_loss(assets, tmp_path):
    out = tmp_path / "run"
    result = train(*common(assets, out, "--train_batch_size", 2, "--max_train_steps", 30, "--checkpointing_steps", 15,
                           "--validation_data", assets / "val" / "data.txt", "--validation_steps", 15, "--use_ema",
                           "--add_noise_to_condition", "--validation_prompt", "clip 1", "--validation_sampling_steps", 2))
    assert result.returncode == 0, result.stderr[-3000:]
    validation = records(out, "validation_loss")
    assert sorted(validation) == [0, 15, 30]
    assert validation[30] < 0.7 * validation[0], validation
    for name in ("model", "model_ema"):
        assert (out / name / "config.json").is_file() and (out / "checkpoint-30" / name).is_dir()
    assert (out / "validation" / "step-15.mp4").is_file()


def test_kill_and_resume_reproduces_the_uninterrupted_run(assets, tmp_path):
    args = ["--train_batch_size", 1, "--max_train_steps", 24, "--checkpointing_steps", 4, "--use_ema",
            "--add_noise_to_condition", "--lr_scheduler", "cosine", "--lr_warmup_steps", 3]
    env = {"OMP_NUM_THREADS": "1"}
    reference = train(*common(assets, tmp_path / "straight", *args), env=env)
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "killed"
    kill_when([sys.executable, "-m", "soraplan", "train", *map(str, common(assets, out, *args))], out / "checkpoint-8", env)
    assert not (out / "model").exists(), "the run finished before it could be killed"
    resumed = train(*common(assets, out, *args, "--resume_from_checkpoint", "latest"), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, got = records(tmp_path / "straight", "train_loss"), records(out, "train_loss")
    assert sorted(got) == list(range(1, 25))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-7), step
    for name in ("model", "model_ema"):
        a = load_file(tmp_path / "straight" / name / "diffusion_pytorch_model.safetensors")
        b = load_file(out / name / "diffusion_pytorch_model.safetensors")
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), name


@pytest.mark.dist  # two processes: `make test-dist`
def test_two_processes_take_the_single_process_step(assets, tmp_path):
    """2 ranks x batch 1 == 1 rank x batch 2: same samples, same noise, same averaged gradient."""
    env = {"OMP_NUM_THREADS": "1"}
    single = train(*common(assets, tmp_path / "one", "--train_batch_size", 2, "--max_train_steps", 1), env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = train(*common(assets, tmp_path / "two", "--train_batch_size", 1, "--max_train_steps", 1), env=env,
                launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"])
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert records(tmp_path / "one", "train_loss")[1] == pytest.approx(records(tmp_path / "two", "train_loss")[1], rel=1e-5)

    from accelerate.utils import set_seed

    from soraplan.models import OpenSoraInpaint

    set_seed(1234)  # the trainer's initialisation
    config = {k: v for k, v in json.loads((assets / "model" / "config.json").read_text()).items() if not k.startswith("_")}
    start = OpenSoraInpaint.from_config(config).state_dict()
    one = load_file(tmp_path / "one" / "model" / "diffusion_pytorch_model.safetensors")
    two = load_file(tmp_path / "two" / "model" / "diffusion_pytorch_model.safetensors")
    moved = 0
    for key in start:
        if key.endswith("to_k.bias"):
            # softmax ignores a shift shared by all keys: this gradient is 0 up to rounding, and AdamW's
            # first step (lr * sign(grad)) turns rounding noise into +-lr
            continue
        assert torch.allclose(one[key], two[key], atol=1e-6), key
        moved += int(not torch.equal(one[key], start[key]))
    assert moved > 100  # the step really changed the weights


@pytest.mark.slow  # three DeepSpeed launches: about a minute each stage
@pytest.mark.parametrize("launch_config", ["deepspeed_zero2_config.yaml", "deepspeed_zero3_config.yaml",
                                           "deepspeed_zero2_offload_config.yaml", "deepspeed_zero3_offload_config.yaml"])
def test_deepspeed_takes_the_single_process_step_and_resumes(assets, tmp_path, launch_config):
    """The release's launches: accelerate + DeepSpeed ZeRO-2 and ZeRO-3, each also with CPU offload, from
    scripts/accelerate_configs/ (on DeepSpeed's CPU accelerator with gloo here). 2 ranks x batch 1 == 1 rank
    x batch 2, also across a resume from a ZeRO checkpoint (partitioned optimizer state; under ZeRO-3
    partitioned weights too), so every layout ends at the same weights."""
    pytest.importorskip("deepspeed")
    env = {"OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    flags = ["--mixed_precision", "no", "--max_grad_norm", 1.0, "--checkpointing_steps", 1, "--use_ema"]
    single = train(*common(assets, tmp_path / "one", "--train_batch_size", 2, "--max_train_steps", 2, *flags), env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                f"scripts/accelerate_configs/{launch_config}", "--num_processes", "2",
                "--main_process_port", "29652", "-m"]
    for steps in (1, 2):  # stop after step 1, then resume from its ZeRO checkpoint
        zero = train(*common(assets, tmp_path / "ds", "--train_batch_size", 1, "--max_train_steps", steps, *flags,
                             "--resume_from_checkpoint", "latest"), env=env, launcher=launcher, cwd=ROOT)
        assert zero.returncode == 0, zero.stderr[-3000:]
    assert (tmp_path / "ds" / "checkpoint-1" / "accelerate_state" / "pytorch_model").is_dir()  # ZeRO's format
    one, two = records(tmp_path / "one", "train_loss"), records(tmp_path / "ds", "train_loss")
    assert one[2] == pytest.approx(two[2], rel=1e-4)
    for name in ("model", "model_ema"):
        a = load_file(tmp_path / "one" / name / "diffusion_pytorch_model.safetensors")
        b = load_file(tmp_path / "ds" / name / "diffusion_pytorch_model.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            if not key.endswith("to_k.bias"):  # see test_two_processes_take_the_single_process_step
                assert torch.allclose(a[key], b[key], atol=1e-5), (name, key)


def test_registry_model_and_t2v_initialisation(assets, tmp_path):
    t2v = tmp_path / "t2v"
    build_tiny_pipeline(t2v=True).transformer.save_pretrained(t2v)
    args = common(assets, tmp_path / "reg", "--train_batch_size", 2, "--max_train_steps", 1, "--pretrained", t2v)
    args[args.index("--model") + 1] = "OpenSoraInpaint_v1_3-tiny"
    result = train(*args)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    "mask_config,message",
    [("mask_type_ratio_dict_video: {t2iv: 0, i2v: 0}", "all zero"),
     ("mask_type_ratio_dict_video: {i2v: -1}", "non-negative"),
     ("mask_type_ratio_dict_video: {random_spatial: 1}", "unknown mask type 'random_spatial'"),
     ("min_clear_ratio: 0.9\nmax_clear_ratio: 0.1", "min_clear_ratio")],
)
def test_bad_mask_config(assets, tmp_path, mask_config, message, capsys):
    """In this process (no start-up per case; the no-traceback rule in a process of its own is
    test_no_surviving_samples_is_a_clear_error's)."""
    from soraplan.cli.main import main

    path = tmp_path / "mask.yaml"
    path.write_text(mask_config)
    args = common(assets, tmp_path / "o", "--max_train_steps", 1)
    args[args.index("--mask_config") + 1] = path
    code = main(["train", *map(str, args)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err[-2000:]


@pytest.mark.parametrize("timeout", ["0", "-5"])
def test_collective_timeout_must_be_positive(assets, tmp_path, timeout, capsys):
    from soraplan.cli.main import main

    args = common(assets, tmp_path / "o", "--max_train_steps", 1, "--collective_timeout", timeout)
    code = main(["train", *map(str, args)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert f"--collective_timeout must be a positive number of seconds, got {float(timeout)}" in err[0]
    assert not (tmp_path / "o").exists()  # nothing written for a mistake


def test_no_surviving_samples_is_a_clear_error(assets, tmp_path):
    args = common(assets, tmp_path / "o", "--max_train_steps", 1)
    args[args.index("--num_frames") + 1] = 33  # the 12-frame clips are too short
    args[args.index("--min_num_frames") + 1] = 33
    result = train(*args)
    assert result.returncode == 2 and "no training sample survives" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.dist  # two processes: `make test-dist`
def test_reference_script_runs_on_cpu(assets, tmp_path):
    env = {"LAUNCH": f"{sys.executable} -m torch.distributed.run --nproc_per_node 2 --master_port 29641",
           "DATA": str(assets / "train" / "data.txt"), "MODEL": str(assets / "model"), "PRETRAINED": str(assets / "model"),
           "AE_PATH": str(assets / "vae"), "TEXT_ENCODER": str(assets / "t5"), "OUTPUT_DIR": str(tmp_path / "out")}
    result = subprocess.run(
        ["bash", "scripts/text_condition/gpu/train_inpaint_v1_3.sh", "--num_frames", "9", "--max_height", "32",
         "--max_width", "32", "--max_hxw", "1024", "--min_hxw", "256", "--hw_stride", "16", "--train_fps", "8",
         "--min_num_frames", "9", "--max_train_steps", "2", "--model_max_length", "32", "--mixed_precision", "no",
         "--dataloader_num_workers", "0", "--checkpointing_steps", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "checkpoint-2" / "model_ema").is_dir()


@pytest.mark.dist  # two processes: `make test-dist`
def test_sequence_parallel_training_takes_the_single_process_step(assets, tmp_path):
    """--sp_size 2 on 2 processes: both ranks hold the batch, each half of its frames."""
    env = {"OMP_NUM_THREADS": "1"}
    frames = ["--num_frames", 5, "--min_num_frames", 5]  # 2 latent frames, split 1 + 1
    single = train(*common(assets, tmp_path / "one", "--train_batch_size", 2, "--max_train_steps", 1), *frames, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    sp = train(*common(assets, tmp_path / "sp", "--train_batch_size", 2, "--max_train_steps", 1, "--sp_size", 2), *frames,
               env=env, launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"])
    assert sp.returncode == 0, sp.stderr[-3000:]
    one = load_file(tmp_path / "one" / "model" / "diffusion_pytorch_model.safetensors")
    two = load_file(tmp_path / "sp" / "model" / "diffusion_pytorch_model.safetensors")
    for key in one:
        if not key.endswith("to_k.bias"):  # see test_two_processes_take_the_single_process_step
            assert torch.allclose(one[key], two[key], atol=1e-6), key
    bad = train(*common(assets, tmp_path / "bad", "--max_train_steps", 1, "--sp_size", 3))
    assert bad.returncode == 2 and "--sp_size 3 must divide" in bad.stderr


@pytest.mark.slow  # two training runs, about 30 s: `make test-slow`
def test_text_cache_and_tensorboard(assets, tmp_path):
    """Cached text-encoder states give the same run; --report_to tensorboard writes event files."""
    base = ("--train_batch_size", 2, "--max_train_steps", 2, "--checkpointing_steps", 0, "--cfg", 0.0)
    plain = train(*common(assets, tmp_path / "plain", *base))
    cached = train(*common(assets, tmp_path / "cached", *base, "--text_cache_dir", tmp_path / "cache",
                           "--report_to", "tensorboard"))
    assert plain.returncode == 0 and cached.returncode == 0, cached.stderr[-3000:]
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 4  # one per caption seen (2 steps x 2)
    assert records(tmp_path / "plain", "train_loss") == pytest.approx(records(tmp_path / "cached", "train_loss"), rel=1e-6)
    assert list((tmp_path / "cached").rglob("events.out.tfevents.*"))
    again = train(*common(assets, tmp_path / "again", *base, "--text_cache_dir", tmp_path / "cache"))
    assert again.returncode == 0
    assert records(tmp_path / "again", "train_loss") == pytest.approx(records(tmp_path / "plain", "train_loss"), rel=1e-6)


@pytest.mark.slow  # a training run and a sampling run, about 30 s: `make test-slow`
def test_a_pipelines_text_encoder_folder_trains_as_the_encoder_with_its_tokenizer(assets, tmp_path):
    """--text_encoder_name_1 PIPELINE/text_encoder (no tokenizer files there: they are in PIPELINE/tokenizer)
    reads the captions as the folder that holds both does; a folder with no tokenizer is a one-line error."""
    base = ("--train_batch_size", 2, "--max_train_steps", 2, "--checkpointing_steps", 0, "--cfg", 0.0)
    together = train(*common(assets, tmp_path / "together", *base))
    split = train(*common(assets, tmp_path / "split", *base, "--text_encoder_name_1", assets / "pipeline" / "text_encoder"))
    assert together.returncode == 0 and split.returncode == 0, split.stderr[-3000:]
    assert records(tmp_path / "split", "train_loss") == pytest.approx(records(tmp_path / "together", "train_loss"), rel=1e-6)
    lone = tmp_path / "encoder_only"
    lone.mkdir()
    for name in ("config.json", "model.safetensors"):
        (lone / name).write_bytes((assets / "t5" / name).read_bytes())
    bad = train(*common(assets, tmp_path / "bad", *base, "--text_encoder_name_1", lone))
    assert bad.returncode == 2 and "holds no tokenizer" in bad.stderr and "Traceback" not in bad.stderr


def in_process_trainer(assets, out, mask_config: Path, **overrides):
    from soraplan.training.i2v_trainer import I2VTrainer, TrainConfig

    values = dict(data=str(assets / "train" / "data.txt"), output_dir=str(out), model=str(assets / "model"),
                  ae_path=str(assets / "vae"), text_encoder_name_1=str(assets / "t5"), mask_config=str(mask_config),
                  num_frames=9, max_height=32, max_width=32, hw_stride=16, train_fps=8, min_num_frames=9,
                  model_max_length=32, train_batch_size=2, checkpointing_steps=0)
    return I2VTrainer(TrainConfig(**{**values, **overrides}))


def test_condition_roundtrip_gives_continuations_vae_reconstructed_frames(assets, tmp_path):
    """--condition_roundtrip 1: a continuation's given frames are the VAE's reconstruction of the clip
    (what a long video's later segments are given), the target latents stay the clean clip's; mask
    types outside --condition_roundtrip_masks, and runs without the flag, see the clean frames."""
    continuations = tmp_path / "continuation.yaml"
    continuations.write_text("min_clear_ratio: 0.3\nmax_clear_ratio: 0.6\nmask_type_ratio_dict_video:\n"
                             "  continuation: 1\nmask_type_ratio_dict_image:\n  clear: 1\n")
    clean = in_process_trainer(assets, tmp_path / "clean", continuations)
    items = [clean.dataset[index] for index in (0, 1)]
    batch = {"video": torch.stack([item["video"] for item in items]), "caption": [item["caption"] for item in items]}
    with torch.no_grad():
        plain = clean.encode_batch(batch, 3, [0, 1])
        trainer = in_process_trainer(assets, tmp_path / "rt", continuations, condition_roundtrip=1.0)
        tripped = trainer.encode_batch(batch, 3, [0, 1])
        assert torch.equal(tripped.latents, plain.latents) and torch.equal(tripped.noise, plain.noise)
        assert not torch.allclose(tripped.condition[:, :8], plain.condition[:, :8], atol=1e-3)
        assert torch.equal(tripped.condition[:, 8:], plain.condition[:, 8:])  # the same masks were drawn

        # the conditioning is exactly the clean trainer's for the reconstructed clip (same masks and noise)
        video = batch["video"].to(trainer.vae.dtype)
        recon = trainer.vae.decode(trainer.vae.encode(video).mode()).clamp(-1, 1)
        of_recon = clean.encode_batch({**batch, "video": recon}, 3, [0, 1])
        assert torch.allclose(of_recon.condition, tripped.condition, atol=1e-6)

        i2v = tmp_path / "i2v.yaml"
        i2v.write_text("mask_type_ratio_dict_video:\n  i2v: 1\nmask_type_ratio_dict_image:\n  clear: 1\n")
        untouched = in_process_trainer(assets, tmp_path / "i2v_rt", i2v, condition_roundtrip=1.0)
        reference = in_process_trainer(assets, tmp_path / "i2v", i2v)
        assert torch.equal(untouched.encode_batch(batch, 3, [0, 1]).condition,
                           reference.encode_batch(batch, 3, [0, 1]).condition)


def test_continuation_anchor_puts_the_videos_first_frame_before_the_clip(assets, tmp_path):
    """--continuation_anchor 1: every batch is a continuation batch whose latents start with one extra,
    given latent frame: the video's first frame (from earlier in time) encoded alone; the clip's own
    latents, its masked-video latents and its mask behind it are exactly the clean trainer's for that
    clip; the saved model says it takes a reference frame. Without the flag nothing changes."""
    continuations = tmp_path / "continuation.yaml"
    continuations.write_text("min_clear_ratio: 0.3\nmax_clear_ratio: 0.6\nmask_type_ratio_dict_video:\n"
                             "  continuation: 1\nmask_type_ratio_dict_image:\n  clear: 1\n")
    clean = in_process_trainer(assets, tmp_path / "clean", continuations)
    trainer = in_process_trainer(assets, tmp_path / "anchored", continuations, continuation_anchor=1.0, use_ema=True)
    assert "anchor" not in clean.dataset[0]
    later = [i for i, s in enumerate(trainer.dataset.samples) if s.frame_indices[0] > s.first_source_frame][:2]
    assert len(later) == 2  # 12-frame videos, 9-frame clips: some windows start after the first frame
    items = [trainer.dataset[index] for index in later]
    batch = {"video": torch.stack([item["video"] for item in items]), "caption": [item["caption"] for item in items],
             "anchor": torch.stack([item["anchor"] for item in items])}
    assert not torch.allclose(batch["anchor"], batch["video"][:, :, 0], atol=1e-2)  # from earlier in time
    for name, write in trainer.trained_parts():  # what a checkpoint and the final output hold
        write(tmp_path / "saved" / name)
        assert json.loads((tmp_path / "saved" / name / "config.json").read_text())["reference_frame"] is True, name
    with torch.no_grad():
        anchored = trainer.encode_batch(batch, 3, [0, 1])
        plain = clean.encode_batch(batch, 3, [0, 1])
        frames = plain.latents.shape[2]
        assert anchored.latents.shape[2] == anchored.condition.shape[2] == anchored.noise.shape[2] == frames + 1
        assert anchored.mask_types == [MaskType.continuation] * 2
        # behind the reference, the clip exactly as without it (not the frame-0-swapped clip: nothing of
        # the anchor reaches the clip's latents)
        assert torch.equal(anchored.latents[:, :, 1:], plain.latents)
        assert torch.equal(anchored.condition[:, :, 1:], plain.condition)
        # the reference: the anchor image encoded alone (a draw from its posterior, the clip's draws before
        # it in each sample's stream), given
        from soraplan.training.i2v_trainer import per_sample_randn, step_generators

        generators = step_generators(trainer.config.seed, 3, [0, 1], "cpu")
        for shape in (plain.latents.shape[1:], plain.latents.shape[1:]):
            per_sample_randn(shape, generators, "cpu")
        posterior = trainer.vae.encode(batch["anchor"][:, :, None])
        for part in (anchored.latents[:, :, :1], anchored.condition[:, :8, :1]):
            draw = posterior.mean + posterior.std * per_sample_randn(posterior.mean.shape[1:], generators, "cpu")
            assert torch.allclose(part, trainer.vae.normalize_latents(draw), atol=1e-6)
        assert torch.all(anchored.condition[:, 8:, 0] == 0)
        # the model's inputs and targets follow the latents; a validation batch (no anchors) is plain
        model_in, target, *_ = trainer.prepare_inputs(batch, 3, [0, 1])
        assert model_in.shape[2] == target.shape[2] == frames + 1
        assert trainer.encode_batch({k: v for k, v in batch.items() if k != "anchor"}, 3, [0, 1]).latents.shape[2] == frames
    assert trainer.model.config.reference_frame and not clean.model.config.reference_frame


def test_continuation_anchor_draws_whole_batches(assets, tmp_path):
    """A share of the batches, each whole (one latent length per batch), whatever the mask mix drew."""
    mix = tmp_path / "mix.yaml"
    mix.write_text("mask_type_ratio_dict_video:\n  i2v: 1\n  transition: 1\nmask_type_ratio_dict_image:\n  clear: 1\n")
    trainer = in_process_trainer(assets, tmp_path / "half", mix, continuation_anchor=0.5)
    items = [trainer.dataset[index] for index in range(2)]
    batch = {"video": torch.stack([item["video"] for item in items]), "caption": [item["caption"] for item in items],
             "anchor": torch.stack([item["anchor"] for item in items])}
    kinds = []
    with torch.no_grad():
        for step in range(12):
            encoded = trainer.encode_batch(batch, step, [0, 1])
            anchored = encoded.latents.shape[2] == 4  # 9-frame clips: 3 latent frames, + 1
            assert anchored == (encoded.mask_types == [MaskType.continuation] * 2)
            kinds.append(anchored)
    assert 0 < sum(kinds) < len(kinds)


def test_bad_continuation_anchor_flag(assets, tmp_path, capsys):
    from soraplan.cli.main import main

    flags, message = ("--continuation_anchor", "-0.1"), "--continuation_anchor is a probability"
    code = main(["train", *map(str, common(assets, tmp_path / "o", "--max_train_steps", 1, *flags))])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and message in err[0], err

@pytest.mark.parametrize("flags,message", [(("--condition_roundtrip", "1.5"), "--condition_roundtrip is a probability"),
                                           (("--condition_roundtrip_masks", "continuation,sideways"),
                                            "--condition_roundtrip_masks: unknown mask type 'sideways'")])
def test_bad_condition_roundtrip_flags(assets, tmp_path, flags, message, capsys):
    from soraplan.cli.main import main

    code = main(["train", *map(str, common(assets, tmp_path / "o", "--max_train_steps", 1, *flags))])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and message in err[0], err
