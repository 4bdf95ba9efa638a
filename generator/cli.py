"""The ``atlas`` command: ``layers``, ``generate``, ``examples``, ``wiring``, ``sample-images``,
``site``, ``bench``, ``merge``, ``slurm``.

Every problem with the input ends in one line on stderr and a non-zero exit, never a traceback; the
arguments are checked before TensorFlow or JAX is imported, so a bad one is refused at once. A file
system that says no (a full disk, a read-only folder) is one line too, naming the file and the reason:
files are written whole or not at all, so the same command resumes once it is fixed.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import math
import os
import sys

from generator.errors import AtlasError
from generator.zoo import MODELS

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_FAILED = 3
CPU_HOURS_LIMIT = 1.0  # a run projected longer than this on a CPU needs --device cpu
CPU_FLOP_RATE = 0.2e12  # FLOP/s a 2-core CPU sustains on the render step (BENCHMARKS.md: 0.17-0.48)


def _whole(text: str, least: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r} must be {'positive' if least else '0 or more'}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 0 to 4294967295")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be positive and finite")
    return value


def _batch(text: str) -> int | None:
    return None if text == "auto" else _positive_int(text)


def _shard(text: str):
    from generator.shards import parse_shard

    try:
        return parse_shard(text)
    except AtlasError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _gpus(text: str) -> int | None:
    return None if text == "auto" else _whole(text)


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (the usage is one ``--help`` away), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _model_args(parser: argparse.ArgumentParser, weights_default: str = "imagenet") -> None:
    parser.add_argument("--model", default="vgg16", choices=tuple(MODELS))
    parser.add_argument("--weights", default=weights_default, help="imagenet | hed-bsds500 (vgg16) | random | PATH.h5")


def _device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"))
    parser.add_argument("--backend", default=None, choices=("tensorflow", "jax"), help="default: KERAS_BACKEND or tensorflow")
    parser.add_argument("--device", default="auto", choices=("auto", "gpu", "cpu"),
                        help="auto: a GPU if the backend sees one; cpu: run a long job on the CPU anyway")
    parser.add_argument("--batch", type=_batch, default=None, help="auto or filters (images) per batch")
    parser.add_argument("--devices", type=_positive_int, default=None,
                        help="how many of the visible devices to use (default: all of them)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="atlas", description="Feature visualization atlas of keras.applications convnets")
    sub = parser.add_subparsers(dest="command", required=True)

    layers = sub.add_parser("layers", help="list the visualizable layers of a model")
    layers.add_argument("--model", default="vgg16", choices=tuple(MODELS))
    layers.add_argument("--weights", default=None, help="also load these weights (checks them)")
    layers.add_argument("--size", type=_positive_int, default=128, help="input side for the map sizes")

    gen = sub.add_parser("generate", help="render filter visualizations into the atlas folder")
    _model_args(gen)
    gen.add_argument("--layers", default="all", help="all, or block3_conv3,block5_conv1")
    gen.add_argument("--filters", default="all", help="all, 0-15 or 3,7 (per layer)")
    gen.add_argument("--views", default="channel", help="channel,neuron,negative,diversity or all")
    gen.add_argument("--size", type=_positive_int, default=128)
    gen.add_argument("--steps", type=_positive_int, default=256)
    gen.add_argument("--lr", type=_positive_float, default=None, help="default: lucid 0.05, naive 10")
    gen.add_argument("--method", default="lucid", choices=("lucid", "naive"))
    _device_args(gen)
    gen.add_argument("--seed", type=_seed, default=0)
    gen.add_argument("--out", default="atlas")
    gen.add_argument("--force", action="store_true", help="replace an atlas made with other settings or weights")
    gen.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                     help="render part K of N (from 0) of this job, beside the other parts; then atlas merge")

    ex = sub.add_parser("examples", help="find the real image patches that drive each filter up and down")
    ex.add_argument("--images", required=True, help="a folder of JPEG/PNG/WebP/BMP/GIF/TIFF images (searched recursively)")
    _model_args(ex)
    ex.add_argument("--layers", default="all")
    ex.add_argument("--top", type=_positive_int, default=16, help="examples kept per filter, each way")
    ex.add_argument("--size", type=_positive_int, default=224, help="images are resized and centre-cropped to this")
    _device_args(ex)
    ex.add_argument("--checkpoint", type=_positive_int, default=1024, help="images between checkpoints of the pass")
    ex.add_argument("--images-name", default=None, help="the image set's name, shown beside its crops")
    ex.add_argument("--images-license", default=None, help="its licence, shown beside its crops")
    ex.add_argument("--out", default="atlas")
    ex.add_argument("--force", action="store_true",
                    help="replace examples made from another image set or size, or an atlas of other weights")
    ex.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                    help="stream part K of N (from 0) of the images, beside the other parts; then atlas merge")

    wiring = sub.add_parser("wiring", help="each filter's strongest inputs and outputs, from the weights")
    _model_args(wiring)
    wiring.add_argument("--out", default="atlas")
    wiring.add_argument("--force", action="store_true", help="replace an atlas made from other weights")

    sample = sub.add_parser("sample-images", help="an offline image set cut from scikit-image's photographs")
    sample.add_argument("folder", help="where to write the tiles")
    sample.add_argument("--size", type=_positive_int, default=96)

    site = sub.add_parser("site", help="render the MkDocs pages from a stored atlas")
    site.add_argument("--data", default="atlas")
    site.add_argument("--out", default="site_src")
    site.add_argument("--compare", default=None,
                      help="an atlas of the same filters by the original method (--method naive), for the Method page")

    bench = sub.add_parser("bench", help="speed, quality, examples, GPU and site-build benchmarks")
    bench.add_argument("what", choices=("speed", "quality", "site", "layers", "examples", "gpu", "shards"))
    bench.add_argument("--model", default="vgg16", choices=tuple(MODELS))
    bench.add_argument("--weights", default=None, help="default: hed-bsds500 for vgg16, random otherwise")
    bench.add_argument("--backend", default=None, choices=("tensorflow", "jax"))
    bench.add_argument("--size", type=_positive_int, default=None)
    bench.add_argument("--steps", type=_positive_int, default=None)
    bench.add_argument("--sample", type=_positive_int, default=16, help="filters per layer (quality)")
    bench.add_argument("--offset", type=_whole, default=0,
                       help="quality: move each sampled filter this far along, for a held-out sample (default 0)")
    bench.add_argument("--layers", default="all")
    bench.add_argument("--batch", type=_positive_int, default=None, help="rows per batch")
    bench.add_argument("--variants", default="naive,lucid", help="quality: methods to compare")
    bench.add_argument("--naive-original", action="store_true",
                       help="quality: run naive at the original script's 96 px, 50 steps")
    bench.add_argument("--precision", default=None, choices=("float32", "mixed_float16", "mixed_bfloat16"))
    bench.add_argument("--images", default=None, help="examples: a folder of images (default: sample-images tiles)")
    bench.add_argument("--reduced", action="store_true", help="gpu: a minutes-long smoke run (CI, CPU)")
    bench.add_argument("--keep", default=None, metavar="DIR",
                       help="site: keep the synthetic atlas in DIR and reuse it next time (writing it is most of the ResNet50 run)")
    bench.add_argument("--out", default="BENCHMARKS.md")

    merge = sub.add_parser("merge", help="join the finished shards of a job into the atlas (after --shard K/N runs)")
    merge.add_argument("--out", default="atlas", help="the atlas folder the shards wrote into")

    # Built last, from the finished generate and examples parsers: every option they have travels to the tasks.
    slurm = sub.add_parser("slurm", help="run atlas generate or examples as a Slurm job array, then merge and build the site")
    jobs = slurm.add_subparsers(dest="slurm_command", required=True, metavar="{generate,examples}")
    for name, command in (("generate", gen), ("examples", ex)):
        job = jobs.add_parser(name, parents=[command], add_help=False, allow_abbrev=False,
                              help=f"atlas {name} split into --shards tasks of one job array")
        job.add_argument("--shards", type=_positive_int, required=True, help="tasks of the job array (shards)")
        job.add_argument("--partition", default=None, help="the Slurm partition (default: the cluster's)")
        job.add_argument("--gpus-per-task", type=_gpus, default=None,
                         help="auto: 1 where the cluster's nodes have GPUs and the run is not --device cpu, else 0")
        job.add_argument("--cpus-per-task", type=_positive_int, default=None, help="default: the cluster's (1)")
        job.add_argument("--time", default=None, help="time limit of each task, as sbatch takes it (4:00:00)")
        job.add_argument("--compare", default=None, help="the site job's atlas site --compare (the Method page's baseline)")
        job.add_argument("--no-site", action="store_true", help="the last job merges (and wires) only; no site")
        job.add_argument("--wait", action="store_true", help="wait for the jobs; exit non-zero if a task failed")
        job.add_argument("--dry-run", action="store_true", help="print the scripts, submit nothing")
    return parser


# --- commands ------------------------------------------------------------------------------------


def cmd_layers(args: argparse.Namespace) -> int:
    from generator.layers import model_layers

    layers = model_layers(args.model)
    if args.weights:
        _check_weights(args.weights, args.model)
        from generator import backend

        backend.select(None)
        from generator.models import load_model

        loaded = load_model(args.model, args.weights)
        print(f"weights: {loaded.weights} sha256 {loaded.weights_sha256[:16]}")
    rows = [("group", "layer", "filters", "receptive field", f"map at {args.size}px", "pre-activation")]
    for layer in layers:
        side = layer.output_size(args.size)
        tap = "conv before its ReLU" if layer.fused else f"{layer.tap}"
        rows.append((layer.group, layer.name, str(layer.filters), f"{layer.receptive_field} px", f"{side}x{side}", tap))
    total = sum(layer.filters for layer in layers)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"total: {len(layers)} layers, {total:,} filters")
    return 0


def _check_weights(weights: str, model: str) -> None:
    """What can be told of a weight source without loading anything."""
    from generator.weights import HED_MODELS, SOURCES

    if weights in SOURCES:
        if weights == "hed-bsds500" and model not in HED_MODELS:
            raise AtlasError(f"--weights hed-bsds500 is a VGG16 backbone, not {model}; use imagenet, random or a path")
        return
    if not weights.endswith(".h5"):
        raise AtlasError(f"--weights {weights!r}: not a weight source; use {', '.join(SOURCES)} or the path of a "
                         ".h5 / .weights.h5 file")
    if not os.path.isfile(weights):
        raise AtlasError(f"{weights}: no such weights file; give the path of a .h5 / .weights.h5")


def _check_out(out: str) -> None:
    path = os.path.abspath(out)
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise AtlasError(f"--out {out}: cannot write there ({probe} is not a writable folder); choose another")


def _start_backend(args: argparse.Namespace):
    """Import the backend (the slow part) and say which device and precision this run uses."""
    from generator import backend

    chosen = backend.select(args.backend, args.device)
    devices = backend.compute_devices(getattr(args, "devices", None))
    facts = devices[0].facts
    precision = backend.resolve_precision(args.precision, facts)
    print(f"{chosen} on {backend.describe_devices(devices)}, {precision}", file=sys.stderr)
    return chosen, facts, precision, devices


def _generate_job(args: argparse.Namespace):
    """What ``atlas generate`` would render, checked: (work, views, config before the backend)."""
    from generator.config import DEFAULT_LR, RenderConfig
    from generator.selection import parse_filters, parse_layers
    from generator.store import weights_name
    from generator.views import parse_views

    layers = parse_layers(args.layers, args.model)
    work = [(layer, parse_filters(args.filters, layer)) for layer in layers]
    views = parse_views(args.views)
    if args.method == "naive" and [v.name for v in views] != ["channel"]:
        raise AtlasError(f"--views {args.views}: the naive method renders the channel view only")
    config = RenderConfig(
        model=args.model, weights=weights_name(str(args.weights)), method=args.method, size=args.size, steps=args.steps,
        lr=args.lr or DEFAULT_LR[args.method], seed=args.seed,
    )
    for layer, _ in work:
        config.check_layer(layer)
    _check_weights(args.weights, args.model)
    _check_out(args.out)
    return work, views, config


def cmd_generate(args: argparse.Namespace) -> int:
    work, views, config = _generate_job(args)
    chosen, facts, precision, devices = _start_backend(args)
    config = dataclasses.replace(config, precision=precision, backend=chosen)
    if facts.kind == "cpu" and args.device == "auto":
        mine = work
        if args.shard is not None:
            from generator.shards import split_generate

            mine = split_generate(work, views, config, args.shard.count).shares[args.shard.index]
        hours = _cpu_hours(mine, views, config)
        if hours > CPU_HOURS_LIMIT:
            raise AtlasError(
                f"no GPU found: this run ({sum(len(f) for _, f in mine) * len(views):,} filter views at "
                f"{config.size} px, {config.steps} steps) would take about {hours:.0f} hours on a CPU like "
                "this project's 2-core machines; add --device cpu to run it here anyway, or run on a GPU "
                "(make install sets one up on NVIDIA machines)"
            )
    from generator.generate import generate
    from generator.models import load_model

    loaded = load_model(args.model, args.weights, seed=args.seed)
    config = dataclasses.replace(config, weights_sha256=loaded.weights_sha256)
    summary = generate(loaded, config, work, args.out, views=views, batch=args.batch, force=args.force,
                       devices=devices, shard=args.shard)
    print(
        f"{summary.rendered} filter views rendered, {summary.skipped} already done, {summary.dead} dead, "
        f"{summary.retried} redone in float32, {summary.seconds:.1f} s; atlas in {args.out}/{args.model} "
        f"(config {config.hash}, {config.precision}, {chosen})"
    )
    _say_shard(args, finished=not (summary.interrupted or summary.failed))
    if summary.failed:
        shown = ", ".join(summary.failed[:5]) + (" …" if len(summary.failed) > 5 else "")
        print(f"atlas generate: error: {len(summary.failed)} filter views went non-finite even in float32 and were "
              f"not written ({shown}); try another --seed or --lr", file=sys.stderr)
        return EXIT_FAILED
    if summary.interrupted:
        print("interrupted: finished batches are saved; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _cpu_hours(work, views, config) -> float:
    pictures = sum(len(filters) * sum(v.images for v in views) for _, filters in work)
    flop = sum(3 * layer.forward_flop(config.size) * len(filters) * sum(v.images for v in views)
               for layer, filters in work) * config.steps
    return flop / CPU_FLOP_RATE / 3600 if pictures else 0.0


def _examples_job(args: argparse.Namespace):
    """What ``atlas examples`` would read, checked: (layers, image set)."""
    from generator.imagesets import list_images
    from generator.selection import parse_layers

    layers = parse_layers(args.layers, args.model)
    if args.size < 16:
        raise AtlasError(f"--size {args.size}: give an image side of at least 16 pixels")
    images = list_images(args.images)
    _check_weights(args.weights, args.model)
    _check_out(args.out)
    return layers, images


def cmd_examples(args: argparse.Namespace) -> int:
    from generator.examples import ExamplesConfig, run_examples

    layers, images = _examples_job(args)
    chosen, facts, precision, devices = _start_backend(args)
    from generator.models import load_model

    loaded = load_model(args.model, args.weights)
    config = ExamplesConfig(model=args.model, weights_sha256=loaded.weights_sha256, size=args.size, top=args.top,
                            images=images, name=args.images_name, license=args.images_license,
                            precision=precision, backend=chosen)
    summary = run_examples(loaded, layers, config, args.out, batch=args.batch, force=args.force,
                           checkpoint=args.checkpoint, shard=args.shard, devices=devices)
    print(summary.line())
    _say_shard(args, finished=not summary.interrupted)
    if summary.interrupted:
        print("interrupted: the pass is checkpointed; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _say_shard(args: argparse.Namespace, finished: bool) -> None:
    if args.shard is not None and finished:
        print(f"shard {args.shard} recorded in {args.out}/{args.model}/.shards/; once every shard has run: "
              f"atlas merge --out {args.out}")


def cmd_merge(args: argparse.Namespace) -> int:
    from generator.shards import merge

    if not os.path.isdir(args.out):
        raise AtlasError(f"--out {args.out}: no such folder; give the atlas folder the shards wrote into")
    lines = merge(args.out)
    print("\n".join(lines) if lines else f"nothing to merge in {args.out}: no shards waiting")
    return 0


def _as_options(parser: argparse.ArgumentParser, args: argparse.Namespace, leave: tuple[str, ...]) -> list[str]:
    """The options of ``parser`` that ``args`` sets to other than their defaults, as a command line
    (whatever option a command gains travels without code here)."""
    out = []
    for action in parser._actions:
        if not action.option_strings or action.dest in leave or isinstance(action, argparse._HelpAction):
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
    from generator import shards, slurm

    command = args.slurm_command
    if args.shard is not None:
        raise AtlasError("--shard: atlas slurm gives each task its own shard; say how many with --shards N")
    if command == "generate":
        work, _, _ = _generate_job(args)
        units, what = shards.generate_units(work), "filters"
    else:
        _, images = _examples_job(args)
        units, what = shards.examples_units(len(images.files)), f"runs of {shards.EXAMPLES_GRAIN} images"
    if args.shards > units:
        raise AtlasError(f"--shards {args.shards}: this job is only {units} {what}; give --shards {units} or fewer")
    parser = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    options = [command, *_as_options(parser, args, leave=("shard",))]
    request = slurm.Request(
        command=command, options=tuple(options), shards=args.shards, out=args.out, model=args.model,
        weights=str(args.weights), device=args.device, partition=args.partition, time=args.time,
        gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task, compare=args.compare,
        site=not args.no_site, python=sys.executable, workdir=os.getcwd(),
    )
    return slurm.run(request, wait=args.wait, dry_run=args.dry_run)


def cmd_wiring(args: argparse.Namespace) -> int:
    _check_weights(args.weights, args.model)
    _check_out(args.out)
    from generator import backend

    backend.select(None)
    from generator.models import load_model
    from generator.wiring import write_wiring

    loaded = load_model(args.model, args.weights)
    count = write_wiring(loaded, args.out, force=args.force)
    print(f"wiring of {count} layers written to {args.out}/{args.model}")
    return 0


def cmd_sample_images(args: argparse.Namespace) -> int:
    from generator.imagesets import write_sample_tiles

    count, sources = write_sample_tiles(args.folder, args.size)
    print(f"{count} tiles of {args.size} px from {sources} scikit-image photographs written to {args.folder}")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    from generator.site import build_site

    _check_out(args.out)
    count = build_site(args.data, args.out, args.compare)
    print(f"{count} pages written to {args.out}/")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from generator import bench

    return bench.main(args)


COMMANDS = {"layers": cmd_layers, "generate": cmd_generate, "examples": cmd_examples, "wiring": cmd_wiring,
            "sample-images": cmd_sample_images, "site": cmd_site, "bench": cmd_bench, "merge": cmd_merge,
            "slurm": cmd_slurm}


def os_error_line(exc: OSError) -> str:
    """A file system's refusal as one line: the file, the reason, what to do."""
    where = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes)) else "a file"
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space and rerun the same command: finished files are kept and it resumes"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "make it writable or choose another --out, then rerun the same command"
    else:
        hint = "rerun the same command once that is fixed: finished files are kept"
    return f"{where}: {reason}; {hint}"


def main(argv: list[str] | None = None) -> int:
    from generator import quiet

    quiet.environment()
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except AtlasError as exc:
        print(f"atlas {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"atlas {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("atlas: stopped; finished files are saved, rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
