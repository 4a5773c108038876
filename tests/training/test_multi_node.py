"""`soraplan train` over two "nodes" on this machine: two torchrun launches (node ranks 0 and 1, one
process each) meeting at 127.0.0.1, as two machines would; a node lost mid-run; flags that differ
between the nodes; and checkpoints resumed under another layout. Run by `make test-dist`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from soraplan.training.i2v_trainer import check_resume_layout

from .test_train_i2v import ROOT, assets, common, records, train  # noqa: F401 (assets: the fixture)

pytestmark = pytest.mark.dist

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FLAGS = ["--train_batch_size", 1, "--max_train_steps", 12, "--checkpointing_steps", 4, "--use_ema",
         "--lr_scheduler", "cosine", "--lr_warmup_steps", 3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_command(assets, out, node_rank: int, port: int, *flags) -> list[str]:
    """One node's launch line: torchrun with --nnodes 2, this node's rank, the head at 127.0.0.1."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node_rank),
            "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "soraplan",
            "train", *map(str, common(assets, out, *flags))]


def start_nodes(assets, out, *flags, flags_of_node_1=None) -> list[subprocess.Popen]:
    port = free_port()
    return [subprocess.Popen(node_command(assets, out, rank, port, *(flags_of_node_1 if rank and flags_of_node_1
                                                                     else flags)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                             start_new_session=True)
            for rank in (0, 1)]


def finish(nodes, timeout=300) -> list[tuple[int, str]]:
    results = []
    for node in nodes:
        try:
            _, err = node.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_node(node, signal.SIGKILL)
            raise
        results.append((node.returncode, err))
    return results


def stop_node(node: subprocess.Popen, sig) -> None:
    """What happens to a machine that dies (SIGKILL) or freezes (SIGSTOP): every process of its launch,
    the torchrun agent and its workers (which run in sessions of their own)."""
    victims = [psutil.Process(node.pid), *psutil.Process(node.pid).children(recursive=True)]
    for victim in victims:
        try:
            victim.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "diffusion_pytorch_model.safetensors")


def assert_same_training(a: Path, b: Path, rel=1e-5, atol=1e-6) -> None:
    """Same losses at every step and the same final weights (model and EMA) within float rounding."""
    expected, got = records(a, "train_loss"), records(b, "train_loss")
    assert sorted(got) == sorted(expected)
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=rel, abs=1e-7), step
    for name in ("model", "model_ema"):
        x, y = weights(a / name), weights(b / name)
        for key in x:
            if not key.endswith("to_k.bias"):  # see test_two_processes_take_the_single_process_step
                assert torch.allclose(x[key], y[key], atol=atol), (name, key)


@pytest.fixture(scope="module")
def one_node(assets, tmp_path_factory):
    """The run to match: one launch, two processes."""
    out = tmp_path_factory.mktemp("one_node") / "run"
    result = train(*common(assets, out, *FLAGS), env={"OMP_NUM_THREADS": "1"},
                   launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", str(free_port()), "-m"])
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_two_nodes_train_as_one_node(assets, one_node, tmp_path):
    out = tmp_path / "two_nodes"
    for code, err in finish(start_nodes(assets, out, *FLAGS)):
        assert code == 0, err[-3000:]
    assert_same_training(one_node, out)


@pytest.mark.parametrize("launch_config", ["multi_node_deepspeed_config.yaml", "multi_node_ddp_config.yaml"])
def test_two_nodes_with_the_multi_node_configs_train_as_one_node(assets, one_node, tmp_path, launch_config):
    """scripts/accelerate_configs/multi_node_deepspeed_config.yaml (ZeRO-2, the standard launcher: one
    `accelerate launch` per machine; on DeepSpeed's CPU accelerator) and multi_node_ddp_config.yaml, each
    with 2 machines of one process."""
    deepspeed = "deepspeed" in launch_config
    if deepspeed:
        pytest.importorskip("deepspeed")
    out, port = tmp_path / "run", free_port()
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         f"scripts/accelerate_configs/{launch_config}", "--num_machines", "2", "--num_processes", "2",
         "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port), "-m",
         "soraplan", "train", *map(str, common(assets, out, *FLAGS, "--mixed_precision", "no"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**ENV, "DS_ACCELERATOR": "cpu"}, start_new_session=True) for rank in (0, 1)]
    for code, err in finish(nodes):
        assert code == 0, err[-3000:]
    # ZeRO's checkpoint format, or accelerate's
    assert (out / "checkpoint-4" / "accelerate_state" / ("pytorch_model" if deepspeed else "model.safetensors")).exists()
    assert_same_training(one_node, out, rel=1e-4, atol=1e-5)


def test_a_killed_node_is_reported_and_both_nodes_resume_to_the_same_weights(assets, one_node, tmp_path):
    out = tmp_path / "killed"
    nodes = start_nodes(assets, out, *FLAGS)
    deadline = time.time() + 300
    while not (out / "checkpoint-4").is_dir() and time.time() < deadline and nodes[0].poll() is None:
        time.sleep(0.02)
    stop_node(nodes[1], signal.SIGKILL)  # node 1 is gone, processes and all
    killed_at = time.time()
    (code, err), _ = finish(nodes, timeout=120)
    assert not (out / "model").exists(), "the run finished before node 1 could be killed"
    # the survivor stops at once (a dead peer's sockets close) with one line, not a traceback or a hang
    assert time.time() - killed_at < 60
    assert code != 0
    lines = [line for line in err.splitlines() if "soraplan train: error:" in line]
    assert len(lines) == 1, err[-3000:]
    assert "rank 0 of 2 lost the other processes at step" in lines[0]
    assert "the newest checkpoint is checkpoint-" in lines[0] and "--resume_from_checkpoint latest" in lines[0]
    assert "Traceback" not in err.split("soraplan train: error:")[0]  # (torchrun's own report follows the line)

    for code, err in finish(start_nodes(assets, out, *FLAGS, "--resume_from_checkpoint", "latest")):
        assert code == 0, err[-3000:]
    assert_same_training(one_node, out)


def test_a_frozen_node_is_reported_after_the_collective_timeout(assets, tmp_path):
    out = tmp_path / "frozen"
    nodes = start_nodes(assets, out, *FLAGS, "--collective_timeout", 10)
    deadline = time.time() + 300
    while not (out / "checkpoint-4").is_dir() and time.time() < deadline and nodes[0].poll() is None:
        time.sleep(0.02)
    stop_node(nodes[1], signal.SIGSTOP)  # node 1 freezes: its sockets stay open, nothing answers
    frozen_at = time.time()
    try:
        _, err = nodes[0].communicate(timeout=120)
        waited = time.time() - frozen_at
    finally:
        stop_node(nodes[1], signal.SIGKILL)
        nodes[1].communicate()
    assert nodes[0].returncode != 0
    assert 10 <= waited < 60, waited
    assert "no answer within --collective_timeout 10 s" in err, err[-3000:]


def test_nodes_launched_with_different_flags_stop_at_once(assets, tmp_path):
    started = time.time()
    results = finish(start_nodes(assets, tmp_path / "run", *FLAGS, flags_of_node_1=[*FLAGS, "--max_train_steps", 40]),
                     timeout=120)
    assert time.time() - started < 90
    for code, err in results:
        assert code != 0, err[-3000:]  # (torchrun exits 1 whatever its worker returned)
        assert ("soraplan train: error: the processes were launched with different flags: --max_train_steps is "
                "rank 0: 12, rank 1: 40") in err
    assert not (tmp_path / "run" / "checkpoint-4").exists()


def test_a_checkpoint_of_two_processes_resumes_on_one_with_the_same_global_batch(assets, one_node, tmp_path):
    """2 processes x batch 1, stopped at step 4, resumed by 1 process x batch 2: the run of 2 processes
    (the learning-rate schedule, counted per process by accelerate, is set where it would be)."""
    out = tmp_path / "moved"
    first = train(*common(assets, out, *FLAGS, "--max_train_steps", 4), env={"OMP_NUM_THREADS": "1"},
                  launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                            "--master_port", str(free_port()), "-m"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["layout"]["processes"] == 2
    one_process = [*FLAGS, "--train_batch_size", 2, "--resume_from_checkpoint", "latest"]
    wrong = train(*common(assets, out, *FLAGS, "--resume_from_checkpoint", "latest"), env={"OMP_NUM_THREADS": "1"})
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines()[-1] == (
        "soraplan train: error: checkpoint-4 was trained with 2 samples per optimizer step (--train_batch_size x "
        "data-parallel processes) and this launch has 1: a resume continues the same training, so keep it at 2, or "
        f"resume with the layout that wrote it, or start a new run from its weights with --pretrained "
        f"{out / 'checkpoint-4' / 'model'} (the optimizer starts afresh)")
    resumed = train(*common(assets, out, *one_process), env={"OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training(one_node, out)


@pytest.mark.parametrize("saved, now, message", [
    ({"deepspeed": False, "zero_stage": 0}, {"deepspeed": True, "zero_stage": 2},
     "checkpoint-4 was written by accelerate (DDP or one process) and this launch runs DeepSpeed ZeRO-2"),
    ({"deepspeed": True, "zero_stage": 2}, {"deepspeed": True, "zero_stage": 3},
     "checkpoint-4 was written by DeepSpeed ZeRO-2 and this launch runs DeepSpeed ZeRO-3"),
    ({"deepspeed": True, "zero_stage": 2, "processes": 2}, {"deepspeed": True, "zero_stage": 2, "processes": 4},
     "checkpoint-4 holds DeepSpeed shards for 2 processes and this launch has 4"),
    ({"gradient_accumulation_steps": 1}, {"gradient_accumulation_steps": 2},
     "checkpoint-4 was trained with 1 --gradient_accumulation_steps and this launch has 2"),
])
def test_layouts_that_cannot_resume_are_named(saved, now, message):
    base = {"deepspeed": False, "zero_stage": 0, "processes": 2, "samples_per_step": 2, "gradient_accumulation_steps": 1}
    with pytest.raises(ValueError) as error:
        check_resume_layout(Path("out/checkpoint-4"), {**base, **saved}, {**base, **now})
    assert str(error.value).startswith(message)
    check_resume_layout(Path("out/checkpoint-4"), {**base, **saved}, {**base, **saved})  # the same layout resumes
    check_resume_layout(Path("out/checkpoint-4"), None, {**base, **now})  # older checkpoints record none
