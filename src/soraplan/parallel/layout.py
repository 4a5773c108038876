"""How the processes of a sampling run share the work: data, sequence and CFG parallelism.

    plain torchrun          every rank is a unit: prompts are dealt out to ranks
    --cfg_parallel          ranks (2p, 2p+1) are a unit: unconditional half on 2p, conditional on 2p+1
    --sp                    all ranks are one unit, each video's frames split over all of them
    --sp --cfg_parallel     all ranks are one unit: even ranks run the unconditional half, odd ranks the
                            conditional one, each half's frames split over its N/2 ranks

Every ``torch.distributed.new_group`` call is made by every rank in the same order, as torch requires.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

from .ulysses import UlyssesGroup


@dataclass
class SamplingLayout:
    unit: int  # which data-parallel unit this rank belongs to; prompt i goes to unit i mod units
    units: int
    writer: bool  # the rank of its unit that writes the unit's files
    sequence: UlyssesGroup | None = None
    cfg: dist.ProcessGroup | None = None


def sampling_layout(sp: bool, cfg_parallel: bool) -> SamplingLayout:
    """The layout for this process; torch.distributed must be initialised when either flag is set."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    if not sp and not cfg_parallel:
        return SamplingLayout(unit=rank, units=world, writer=True)
    if sp and world < 2:
        raise ValueError("--sp needs several processes: run under torchrun --nproc_per_node N")
    if cfg_parallel and world % 2:
        raise ValueError(f"--cfg_parallel needs an even number of processes (2 per video), got {world}")

    cfg_group = None
    if cfg_parallel:  # pairs (2p, 2p+1)
        for pair in range(world // 2):
            group = dist.new_group([2 * pair, 2 * pair + 1])
            if rank // 2 == pair:
                cfg_group = group
    sequence = None
    if sp and not cfg_parallel:
        sequence = UlyssesGroup()
    elif sp:  # one sequence-parallel group per half: the even ranks and the odd ranks
        if world < 4:
            raise ValueError("--sp with --cfg_parallel needs at least 4 processes (2 per CFG half)")
        for half in range(2):
            group = dist.new_group(list(range(half, world, 2)))
            if rank % 2 == half:
                sequence = UlyssesGroup(group)
    if sp:
        return SamplingLayout(unit=0, units=1, writer=rank == 0, sequence=sequence, cfg=cfg_group)
    return SamplingLayout(unit=rank // 2, units=world // 2, writer=rank % 2 == 0, cfg=cfg_group)
