"""``atlas slurm``: the same ``atlas generate`` or ``examples`` command, checked here once, then handed to
the scheduler as a job array of ``--shards`` tasks plus a merge job. The tasks' command lines are
rebuilt from the parsed options, so whatever option a command gains travels without code here.
"""

from __future__ import annotations

import argparse
import os
import sys

from generator.cli.commands import examples_job, generate_job
from generator.cli.parser import build_parser
from generator.errors import AtlasError

MODEL_FILE_FLAGS = ("name", "preprocess", "custom_objects", "weights")


def as_options(parser: argparse.ArgumentParser, args: argparse.Namespace, leave: tuple[str, ...],
               only: tuple[str, ...] | None = None) -> list[str]:
    """The options of ``parser`` that ``args`` sets to other than their defaults (of ``only`` those,
    when given), as a command line."""
    out = []
    for action in parser._actions:
        if not action.option_strings or action.dest in leave or isinstance(action, argparse._HelpAction):
            continue
        if only is not None and action.dest not in only:
            continue
        value, flag = getattr(args, action.dest, action.default), action.option_strings[-1]
        if value == action.default:
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction)):
            out.append(flag)
        elif isinstance(action, argparse._CountAction):
            out.extend([flag] * value)
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                out.extend([flag, *(map(str, item) if isinstance(item, list) else [str(item)])])
        elif isinstance(value, (list, tuple)):
            out.extend([flag, *map(str, value)])
        else:
            out.extend([flag, str(value)])
    return out


def cmd_slurm(args: argparse.Namespace) -> int:
    from generator import cluster
    from generator.cluster import slurm

    command = args.slurm_command
    if args.shard is not None:
        raise AtlasError("--shard: atlas slurm gives each task its own shard; say how many with --shards N")
    if command == "generate":
        network, work, *_ = generate_job(args)
        units, what = cluster.generate_units(work), "filters"
    else:
        network, _, _, images, _ = examples_job(args)
        units, what = cluster.examples_units(len(images.files)), f"runs of {cluster.EXAMPLES_GRAIN} images"
    if args.shards > units:
        raise AtlasError(f"--shards {args.shards}: this job is only {units} {what}; give --shards {units} or fewer")
    gpus = slurm.task_gpus(args.device, args.gpus_per_task, args.partition)
    precision = slurm.task_precision(args.precision, gpus)
    if precision != args.precision:
        note = "give --precision mixed_bfloat16 for GPUs of compute capability 8 or newer" if gpus else "no GPU"
        print(f"--precision auto: every task runs at {precision} ({note})", file=sys.stderr)
        args.precision = precision
    parser = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    options = [command, *as_options(parser, args, leave=("shard",))]
    if network.file is None:
        model_args = ["--model", args.model, "--weights", str(network.weights)]
    else:  # the tasks read the file again, as given (they run in this folder)
        model_args = ["--model", args.model, *as_options(parser, args, leave=(), only=MODEL_FILE_FLAGS)]
    request = slurm.Request(
        command=command, options=tuple(options), shards=args.shards, out=args.out, model=network.name,
        model_args=tuple(model_args), device=args.device, partition=args.partition, time=args.time,
        gpus_per_task=gpus, cpus_per_task=args.cpus_per_task, compare=args.compare,
        site=not args.no_site, python=sys.executable, workdir=os.getcwd(),
    )
    return slurm.run(request, wait=args.wait, dry_run=args.dry_run)
