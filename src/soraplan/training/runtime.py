"""Process setup shared by the trainers, and what DeepSpeed's ZeRO stages need from them."""

from __future__ import annotations

import contextlib
import datetime
import os

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs

DEFAULT_COLLECTIVE_TIMEOUT = 1800  # seconds: torch.distributed's own default


def make_accelerator(mixed_precision: str, collective_timeout: float = DEFAULT_COLLECTIVE_TIMEOUT,
                     **kwargs) -> Accelerator:
    """An Accelerator that also joins several CPU-only processes (torchrun / accelerate launch) into one
    gloo group: without ``cpu=True`` accelerate would run N independent trainings.

    Under DeepSpeed (``accelerate launch`` with a DeepSpeed config) ``cpu=True`` would switch DeepSpeed
    off; on a machine without CUDA (DeepSpeed's ``DS_ACCELERATOR=cpu``) the gloo backend is named
    instead, without which accelerate counts one process and DeepSpeed two.

    ``collective_timeout`` (seconds) bounds every collective: a process whose peers stopped answering
    (a node frozen or cut off, or launched with other flags and already gone) fails after it instead
    of waiting for ever (``reported_peer_failures`` turns that into one line)."""
    if collective_timeout <= 0:
        raise ValueError(f"--collective_timeout must be a positive number of seconds, got {collective_timeout}")
    multi_process = int(os.environ.get("WORLD_SIZE", "1")) > 1
    group = {"timeout": datetime.timedelta(seconds=collective_timeout)}
    cpu_only = multi_process and not torch.cuda.is_available()
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if deepspeed and cpu_only:
        group["backend"] = "gloo"
    kwargs["kwargs_handlers"] = [*kwargs.get("kwargs_handlers", []), InitProcessGroupKwargs(**group)]
    if deepspeed:
        return Accelerator(mixed_precision=mixed_precision, **kwargs)
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu_only, **kwargs)


def build_and_train(trainer_class, config, output_dir) -> dict:
    """``trainer_class(config).train()``; with several processes a peer that dies or goes silent, while
    the trainer starts or trains, is reported as one ``PeerFailure`` line naming the step and the newest
    checkpoint of ``output_dir`` (see ``reported_peer_failures``)."""
    built = []

    def where() -> str:
        return f"at step {built[0].step}" if built else "while starting"

    with reported_peer_failures(config.collective_timeout, where, output_dir):
        built.append(trainer_class(config))
        return built[0].train()


class PeerFailure(RuntimeError):
    """Another process of the run failed or stopped answering; the message says what to do."""


# what gloo, NCCL and the c10d store say when a peer is gone or silent
_PEER_SIGNS = ("connection reset", "connection closed", "connection refused", "broken pipe", "timed out",
               "timeout", "gloo", "nccl", "socket", "peer", "c10d")


@contextlib.contextmanager
def reported_peer_failures(timeout: float, where, output_dir):
    """Inside, a collective that fails because another process died or went silent becomes one
    ``PeerFailure`` naming this rank, ``where()`` (e.g. "at step 12"), the cause and the checkpoint of
    ``output_dir`` to resume from, instead of a backend traceback.

    A killed process closes its sockets, so its peers learn it at their next collective (seconds); a
    frozen or unreachable one is noticed after ``timeout`` seconds (``--collective_timeout``)."""
    try:
        yield
    except PeerFailure:
        raise
    except (RuntimeError, OSError) as error:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        text = str(error).lower()
        dist_error = getattr(torch.distributed, "DistError", ())
        if world < 2 or not (isinstance(error, dist_error) or any(sign in text for sign in _PEER_SIGNS)):
            raise
        from .checkpoints import list_checkpoints

        silent = "timed out" in text or "timeout" in text
        cause = (f"no answer within --collective_timeout {timeout:g} s: a process or node is stopped or unreachable"
                 if silent else "a process or node of the run stopped")
        existing = list_checkpoints(output_dir)
        resume = f"the newest checkpoint is {existing[-1].name}" if existing else "no checkpoint was written yet"
        rank = os.environ.get("RANK", "?")
        raise PeerFailure(f"rank {rank} of {world} lost the other processes {where()} ({cause}); {resume}: launch "
                          "every node again with the same flags and --resume_from_checkpoint latest") from error


def check_same_flags(accelerator: Accelerator, flags: dict, local: tuple = ()) -> None:
    """Every process must have been started with the same flags (the nodes of a multi-node run are
    launched one by one, so a differing command line is easy to make and would otherwise surface as a
    hang or as silently different trainings). ``local`` names flags that may differ per node (paths of
    node-local caches). A difference is a ValueError on every rank naming the flag and its values."""
    if accelerator.num_processes < 2:
        return
    mine = {k: v for k, v in flags.items() if k not in local}
    everyone = [None] * accelerator.num_processes
    torch.distributed.all_gather_object(everyone, mine)
    for key in mine:
        values = [other.get(key) for other in everyone]
        if any(v != values[0] for v in values):
            spread = ", ".join(f"rank {rank}: {v!r}" for rank, v in enumerate(values) if rank == 0 or v != values[0])
            raise ValueError(f"the processes were launched with different flags: --{key} is {spread}; launch "
                             "every node with the same command line")


def zero_stage(accelerator: Accelerator) -> int:
    """The DeepSpeed ZeRO stage of this run; 0 without DeepSpeed."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return int(plugin.zero_stage or 0) if plugin is not None else 0


@contextlib.contextmanager
def hidden_from_transformers(accelerator: Accelerator):
    """Inside this block transformers and diffusers do not see ZeRO-3.

    Under ZeRO-3 accelerate tells transformers (and through it DeepSpeed's ``zero.Init``) to partition
    every model as it is created. The frozen VAE and text encoder never reach ``accelerator.prepare``,
    so partitioned they would hold empty weights: they, and the trained transformer, are built whole
    (host memory: one fp32 copy per process while it starts) and only ``prepare`` partitions. diffusers'
    EMAModel would also gather each parameter itself (and fails to import DeepSpeed when it does): the
    trainer gathers around it instead (``gathered_parameters``)."""
    if zero_stage(accelerator) != 3:
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # what transformers asks before it partitions a model it creates
    try:
        yield
    finally:
        accelerator.state.deepspeed_plugin.set_deepspeed_weakref()  # back for prepare and checkpoints


@contextlib.contextmanager
def gathered_parameters(accelerator: Accelerator, module: torch.nn.Module):
    """Every rank enters; inside, ``module``'s parameters are whole on every rank (read-only).

    ZeRO-3 keeps 1/N of each parameter per rank; writing a ``save_pretrained`` folder or copying
    weights needs them whole for a moment. Without ZeRO-3 this does nothing."""
    if zero_stage(accelerator) != 3:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        yield
