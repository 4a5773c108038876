"""``soraplan data``: build annotation files and check what a training run would use.

    soraplan data annotate VIDEO_DIR -o annotations.json   # probe files, captions from sidecar .txt
    soraplan data check data.txt --num_frames 29 ...       # kept / dropped (and why), buckets
    soraplan data check data.txt --verify ...              # and read every kept sample (torchrun: shared out)
    soraplan data synth -o world/ --n 100                  # synthetic clips of moving coloured shapes
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .dataclass_args import add_dataclass_arguments, dataclass_from_args
from .errors import UserError


def add_parser(subparsers) -> None:
    from ..data.annotations import DataConfig

    parser = subparsers.add_parser("data", help="annotate a folder of videos, check a data.txt, or write a synthetic world")
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    annotate = commands.add_parser("annotate", help="write an annotation JSON for a folder of videos/images")
    annotate.add_argument("folder")
    annotate.add_argument("-o", "--output", required=True, help="annotation file to write (.json)")
    annotate.set_defaults(run=run_annotate)

    synth = commands.add_parser("synth", help="write a synthetic world: moving coloured shapes with captions")
    synth.add_argument("-o", "--output", required=True, help="folder for videos/, annotations.json, data.txt")
    synth.add_argument("--n", type=int, default=100, help="number of clips")
    synth.add_argument("--num_frames", type=int, default=17)
    synth.add_argument("--motion_frames", type=int, default=None,
                       help="clip length the shapes' speed is drawn for (default --num_frames: every shape stays in "
                            "view); with a longer --num_frames the motion goes on at that speed and shapes may leave "
                            "the picture, as in a long video (e.g. --num_frames 65 --motion_frames 17)")
    synth.add_argument("--size", type=int, default=64, help="square frame size in pixels (even)")
    synth.add_argument("--fps", type=float, default=8.0)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--style", choices=("world", "drawn"), default="world",
                       help="drawn: the same kinds of scenes drawn with PIL (hard edges, off-palette colours, other "
                            "radii), clips the world generator never makes")
    synth.add_argument("--colour_jitter", type=int, default=0,
                       help="vary shape colours by up to this much per RGB channel around the palette (backgrounds "
                            "by half), each keeping its palette name; 0: the eight palette colours exactly")
    synth.add_argument("--motions", choices=("axis", "diagonal", "all"), default="axis",
                       help="directions the shapes take: axis (right, left, up, down, still: what the embedded model "
                            "learnt), diagonal (up and to the right, ...: a concept it never saw) or all")
    synth.set_defaults(run=run_synth)

    check = commands.add_parser("check", help="report what the data filters keep and drop, and the buckets")
    check.add_argument("data", help="data.txt: DATA_ROOT,ANNOTATION lines")
    add_dataclass_arguments(check, DataConfig)
    check.add_argument("--min_bucket_size", type=int, default=1, help="drop buckets smaller than this")
    check.add_argument("--verify", action="store_true",
                       help="also read every kept sample as training reads it and list the unreadable ones (exit 1 "
                            "if any); spread over the processes of torchrun / accelerate launch")
    check.set_defaults(run=run_check)


def run_annotate(args) -> int:
    """One process, or ``torchrun --nnodes M --nproc_per_node N -m soraplan data annotate ...`` (or
    accelerate launch): each rank probes every WORLD_SIZE-th file, rank 0 merges the shares in file
    order and writes the one annotation file, the same as one process writes."""
    from ..data.probe import annotate_share, media_files, merge_shares

    if not Path(args.folder).is_dir():  # every rank stops here alike, before any rendezvous
        raise UserError(f"folder {args.folder} does not exist")
    rank, world = _joined_ranks()
    items, problems = merge_shares(_gathered(annotate_share(args.folder, rank, world), world))
    if rank == 0:
        for problem in problems:
            print(f"skipped {problem}")
        partial = f"{args.output}.partial"
        with open(partial, "w") as f:
            json.dump(items, f, indent=1)
        os.replace(partial, args.output)
        files = len(media_files(args.folder))
        spread = f", probed by {world} processes" if world > 1 else ""
        print(f"wrote {len(items)} items to {args.output} ({len(problems)} of {files} files skipped{spread})")
    _leave(world)
    return 0 if items else 1


def _joined_ranks() -> tuple[int, int]:
    """(rank, world size) under torchrun / accelerate launch (any number of nodes), joining the launch's
    gloo group (objects only: CPU collectives on any machine); (0, 1) for one process."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank() if world > 1 else 0), world


def _gathered(share, world: int) -> list:
    """Every rank's ``share``, in rank order, on every rank."""
    if world == 1:
        return [share]
    import torch.distributed as dist

    shares = [None] * world
    dist.all_gather_object(shares, share)
    return shares


def _leave(world: int) -> None:
    """Wait for the main rank's writing, then leave the group."""
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def run_synth(args) -> int:
    from ..demo.world import write_world

    if args.n < 1 or args.num_frames < 1 or args.size < 16 or args.size % 2:
        raise UserError("--n and --num_frames must be positive and --size an even number >= 16")
    if not 0 <= args.colour_jitter <= 64:
        raise UserError(f"--colour_jitter must lie in [0, 64], got {args.colour_jitter}")
    if args.motion_frames is not None and not 1 <= args.motion_frames <= args.num_frames:
        raise UserError(f"--motion_frames must lie in [1, --num_frames = {args.num_frames}], got {args.motion_frames}")
    if args.style == "drawn" and args.colour_jitter:
        raise UserError("--colour_jitter is for the world style; drawn clips vary their colours themselves")
    data_txt = write_world(args.output, args.n, args.seed, args.num_frames, args.size, args.fps, style=args.style,
                           colour_jitter=args.colour_jitter, motions=args.motions, motion_frames=args.motion_frames)
    print(f"wrote {args.n} clips; train with --data {data_txt}")
    return 0


def run_check(args) -> int:
    from ..data.annotations import DataConfig, load_training_samples

    try:
        config = dataclass_from_args(DataConfig, args)
        selection = load_training_samples(args.data, config, args.min_bucket_size)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as error:
        raise UserError(str(error)) from None
    rank, world = _joined_ranks() if args.verify else (0, 1)
    if rank == 0:
        print(f"kept {len(selection.samples)} samples in {len(selection.buckets)} buckets")
        for reason, count in selection.dropped.most_common():
            print(f"dropped {count}: {reason}")
        for (frames, height, width), count in sorted(selection.buckets.items()):
            print(f"bucket {frames}x{height}x{width}: {count}")
    if not args.verify:
        return 0 if selection.samples else 1
    from ..data.video_dataset import unreadable_samples

    # every rank selected the same samples (the filters are deterministic); each reads its share
    found = sorted(found for share in _gathered(unreadable_samples(selection.samples, rank, world), world)
                   for found in share)
    if rank == 0:
        for index, reason in found:
            print(f"unreadable {selection.samples[index].path}: {reason}")
        spread = f" by {world} processes" if world > 1 else ""
        print(f"read {len(selection.samples)} samples as training reads them{spread}: {len(found)} unreadable")
    _leave(world)
    return 0 if selection.samples and not found else 1
