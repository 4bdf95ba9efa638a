"""The ``atlas`` command: ``layers``, ``generate``, ``examples``, ``trust``, ``wiring``, ``sample-images``,
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
from generator.network.zoo import MODELS

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
    from generator.cluster.split import parse_shard

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


def _model(text: str) -> str:
    """A network of the zoo, or the path of a user's model file (read once the backend is up)."""
    from generator.network.modelfile import is_model_path

    if text in MODELS or is_model_path(text):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(MODELS)}, or give the path "
                                     "of a .keras / .h5 model file)")


def _model_file_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default=None, help="a model file's name in the atlas and its URLs (default: its file stem)")
    parser.add_argument("--preprocess", default=None,
                        help="a model file without a Rescaling layer: caffe | tf | torch | none | scale=A,offset=B")
    parser.add_argument("--custom-objects", default=None, metavar="FILE.py",
                        help="a Python file defining the model file's custom layers")


def _model_args(parser: argparse.ArgumentParser, weights_default: str | None = None) -> None:
    parser.add_argument("--model", default="vgg16", type=_model, help="vgg16 | vgg19 | resnet50 | PATH.keras | PATH.h5")
    parser.add_argument("--weights", default=weights_default,
                        help="imagenet (default) | hed-bsds500 (vgg16) | random | PATH.h5; a model file: its own")
    _model_file_args(parser)


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
    layers.add_argument("--model", default="vgg16", type=_model, help="vgg16 | vgg19 | resnet50 | PATH.keras | PATH.h5")
    layers.add_argument("--weights", default=None, help="also load these weights (checks them)")
    _model_file_args(layers)
    layers.add_argument("--size", type=_positive_int, default=None, help="input side for the map sizes (default 128)")

    gen = sub.add_parser("generate", help="render filter visualizations into the atlas folder")
    _model_args(gen)
    gen.add_argument("--layers", default="all", help="all, or block3_conv3,block5_conv1")
    gen.add_argument("--filters", default="all", help="all, 0-15 or 3,7 (per layer)")
    gen.add_argument("--views", default="channel", help="channel,neuron,negative,diversity or all")
    gen.add_argument("--size", type=_positive_int, default=None, help="default 128 (a model file of a fixed input: its side)")
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
    ex.add_argument("--size", type=_positive_int, default=None,
                    help="images are resized and centre-cropped to this (default 224; a fixed input: its side)")
    _device_args(ex)
    ex.add_argument("--checkpoint", type=_positive_int, default=1024, help="images between checkpoints of the pass")
    ex.add_argument("--images-name", default=None, help="the image set's name, shown beside its crops")
    ex.add_argument("--images-license", default=None, help="its licence, shown beside its crops")
    ex.add_argument("--labels", default=None, metavar="folders|FILE",
                    help="each image's class: its subfolder, or a CSV of path,label (or ImageNet's LOC_val_solution.csv / val.txt)")
    ex.add_argument("--classes", default=None, metavar="FILE|imagenet",
                    help="the class names of the model's outputs in order, one a line (default: sorted labels)")
    ex.add_argument("--out", default="atlas")
    ex.add_argument("--force", action="store_true",
                    help="replace examples made from another image set or size, or an atlas of other weights")
    ex.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                    help="stream part K of N (from 0) of the images, beside the other parts; then atlas merge")

    trust = sub.add_parser("trust", help="how far to trust each picture: checks against the filter's dataset examples")
    trust.add_argument("--images", required=True, help="the folder of images the dataset examples came from")
    _model_args(trust)
    trust.add_argument("--layers", default="all", help="all (every layer with dataset examples), or a list")
    _device_args(trust)
    trust.add_argument("--out", default="atlas")

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
    bench.add_argument("what", choices=("speed", "quality", "site", "layers", "examples", "gpu", "shards", "trust"))
    bench.add_argument("--model", default="vgg16", type=_model, help="vgg16 | vgg19 | resnet50 | PATH.keras (layers, quality, examples)")
    bench.add_argument("--weights", default=None, help="default: hed-bsds500 for vgg16, random otherwise, a model file's own")
    _model_file_args(bench)
    bench.add_argument("--backend", default=None, choices=("tensorflow", "jax"))
    bench.add_argument("--size", type=_positive_int, default=None)
    bench.add_argument("--steps", type=_positive_int, default=None)
    bench.add_argument("--sample", type=_positive_int, default=16, help="filters per layer (quality, trust)")
    bench.add_argument("--offset", type=_whole, default=0,
                       help="quality: move each sampled filter this far along, for a held-out sample (default 0)")
    bench.add_argument("--layers", default="all")
    bench.add_argument("--batch", type=_positive_int, default=None, help="rows per batch")
    bench.add_argument("--variants", default="naive,lucid", help="quality: methods to compare")
    bench.add_argument("--naive-original", action="store_true",
                       help="quality: run naive at the original script's 96 px, 50 steps")
    bench.add_argument("--precision", default=None, choices=("float32", "mixed_float16", "mixed_bfloat16"))
    bench.add_argument("--images", default=None, help="examples, trust: a folder of images (default: sample-images tiles)")
    bench.add_argument("--labels", default=None, help="examples: folders or FILE, to time the labelled pass too")
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
    from generator.network.layers import model_layers

    notes: list[str] = []
    weights = args.weights
    if _model_file_checks(args):
        from generator.network import backend

        backend.select(None)
        spec = _read_model_file(args, notes)
        args.weights = weights  # its own weights are read with the file; others only when asked
        print(_model_file_line(spec))
    layers = model_layers(args.model)
    size = args.size or model_spec_of(args).input_size or 128
    if args.weights:
        _check_weights(args.weights, args.model)
        from generator.network import backend

        backend.select(None)
        from generator.network.models import load_model

        loaded = load_model(args.model, args.weights)
        print(f"weights: {loaded.weights} sha256 {loaded.weights_sha256[:16]}")
    rows = [("group", "layer", "filters", "receptive field", f"map at {size}px", "pre-activation")]
    for layer in layers:
        side = layer.output_size(size)
        tap = "conv before its ReLU" if layer.fused else ("conv output (no activation)" if layer.activation == "linear"
                                                          else f"{layer.tap}")
        rows.append((layer.group, layer.name, str(layer.filters), f"{layer.receptive_field} px", f"{side}x{side}", tap))
    total = sum(layer.filters for layer in layers)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for note in notes:
        print(f"not shown: {note}")
    print(f"total: {len(layers)} layers, {total:,} filters")
    return 0


def model_spec_of(args: argparse.Namespace):
    from generator.network.zoo import model_spec

    return model_spec(args.model)


def _model_file_checks(args: argparse.Namespace) -> bool:
    """What can be told of ``--model`` and its flags before any library is imported; True when it
    names a user's model file."""
    from generator.network.inputs import parse_preprocessing
    from generator.network.modelfile import check_path, is_model_path, model_name

    if not is_model_path(args.model):
        for flag, value in (("--name", args.name), ("--preprocess", args.preprocess),
                            ("--custom-objects", args.custom_objects)):
            if value is not None:
                raise AtlasError(f"{flag} is for a model file (--model PATH.keras); {args.model} is the atlas's own "
                                 "network")
        return False
    check_path(args.model)
    model_name(args.model, args.name)
    if args.preprocess is not None:
        parse_preprocessing(args.preprocess)  # its spelling; grayscale is checked once the file is read
    return True


def _read_model_file(args: argparse.Namespace, notes: list[str] | None = None):
    """Read the model file (the backend is up); the rest of the command knows it by its name."""
    from generator.network.modelfile import read_model_file

    spec, _, found = read_model_file(args.model, args.name, args.preprocess, args.custom_objects)
    args.model_file, args.model = args.model, spec.name
    if args.weights is None:
        args.weights = spec.source["file"]
    if notes is None:
        for note in found:
            print(f"note: {note}", file=sys.stderr)
    else:
        notes.extend(found)
    return spec


def _open_model(args: argparse.Namespace, images: str | None = None) -> None:
    """A job's ``--model``: a model file is checked (with the image folder and ``--out``, which cost
    nothing) before the backend starts to read it; a zoo network's weights default to imagenet."""
    if _model_file_checks(args):
        if images is not None:
            from generator.evidence.imagesets import list_images

            list_images(images)
        _check_out(args.out)
        _start_backend(args)
        _read_model_file(args)
    args.weights = args.weights or "imagenet"


def _model_file_line(spec) -> str:
    size = f"{spec.input_size}x{spec.input_size}" if spec.input_size else "any size"
    head = f"a classifier of {spec.head['classes']} classes" if spec.head else "no classifier"
    return (f"{spec.name}: {spec.source['file']} (sha256 {spec.source['sha256'][:16]}), input {size} "
            f"{'grayscale' if spec.channels == 1 else 'RGB'}, preprocessing {spec.preprocessing.key} "
            f"({spec.source['preprocessing_from']}), {head}")


def _size(args: argparse.Namespace, default: int, strict: bool = False) -> int:
    """``--size``, or its default (a network whose input is fixed: its side); ``strict``: a network
    whose input is fixed reads its own side only (its classifier needs it)."""
    fixed = model_spec_of(args).input_size
    if args.size is None:
        return fixed or default
    if strict and fixed and args.size != fixed:
        raise AtlasError(f"--size {args.size}: {args.model} reads {fixed}x{fixed} images only (its input is fixed); "
                         "leave --size out")
    return args.size


def _check_weights(weights: str, model: str) -> None:
    """What can be told of a weight source without loading anything."""
    from generator.network.weights import HED_MODELS, SOURCES

    if not model_spec_of(argparse.Namespace(model=model)).zoo:
        return  # a model file's weights are checked as they load
    if weights in SOURCES:
        if weights == "hed-bsds500" and model not in HED_MODELS:
            raise AtlasError(f"--weights hed-bsds500 is a VGG16 backbone, not {model}; use imagenet, random or a path")
        return
    if not weights.endswith((".h5", ".keras")):
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
    from generator.network import backend

    if getattr(args, "started", None):
        return args.started  # a model file's command starts it first, to read the file
    chosen = backend.select(args.backend, args.device)
    devices = backend.compute_devices(getattr(args, "devices", None))
    facts = devices[0].facts
    precision = backend.resolve_precision(args.precision, facts)
    print(f"{chosen} on {backend.describe_devices(devices)}, {precision}", file=sys.stderr)
    args.started = chosen, facts, precision, devices
    return args.started


def _generate_job(args: argparse.Namespace):
    """What ``atlas generate`` would render, checked: (work, views, config before the backend)."""
    from generator.atlas.store import weights_name
    from generator.network.selection import parse_filters, parse_layers
    from generator.render.config import DEFAULT_LR, RenderConfig
    from generator.render.views import parse_views

    _open_model(args)
    args.size = _size(args, 128)
    layers = parse_layers(args.layers, args.model)
    work = [(layer, parse_filters(args.filters, layer, clip=len(layers) > 1)) for layer in layers]
    if not any(filters for _, filters in work):
        parse_filters(args.filters, layers[0])  # none of the layers has these filters: say so for the first
    work = [(layer, filters) for layer, filters in work if filters]
    views = parse_views(args.views)
    if args.method == "naive" and [v.name for v in views] != ["channel"]:
        raise AtlasError(f"--views {args.views}: the naive method renders the channel view only")
    config = RenderConfig(
        model=args.model, weights=weights_name(str(args.weights)), method=args.method, size=args.size, steps=args.steps,
        lr=args.lr or DEFAULT_LR[args.method], seed=args.seed, preprocessing=_preprocessing_key(args),
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
            from generator.cluster.split import split_generate

            mine = split_generate(work, views, config, args.shard.count).shares[args.shard.index]
        hours = _cpu_hours(mine, views, config)
        if hours > CPU_HOURS_LIMIT:
            raise AtlasError(
                f"no GPU found: this run ({sum(len(f) for _, f in mine) * len(views):,} filter views at "
                f"{config.size} px, {config.steps} steps) would take about {hours:.0f} hours on a CPU like "
                "this project's 2-core machines; add --device cpu to run it here anyway, or run on a GPU "
                "(make install sets one up on NVIDIA machines)"
            )
    from generator.network.models import load_model
    from generator.passes.generate import generate

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


def _preprocessing_key(args: argparse.Namespace) -> str:
    """A model file's preprocessing, part of the config hash (the zoo's networks: implied by the name)."""
    spec = model_spec_of(args)
    return "" if spec.zoo else spec.preprocessing.key


def _cpu_hours(work, views, config) -> float:
    pictures = sum(len(filters) * sum(v.images for v in views) for _, filters in work)
    flop = sum(3 * layer.forward_flop(config.size) * len(filters) * sum(v.images for v in views)
               for layer, filters in work) * config.steps
    return flop / CPU_FLOP_RATE / 3600 if pictures else 0.0


def _examples_job(args: argparse.Namespace):
    """What ``atlas examples`` would read, checked: (layers, image set)."""
    from generator.evidence.imagesets import list_images
    from generator.evidence.labels import check_labels_arg, read_labels
    from generator.network.selection import parse_layers

    check_labels_arg(args.labels, args.classes)
    _open_model(args, images=args.images)
    args.size = _size(args, 224, strict=True)
    layers = parse_layers(args.layers, args.model)
    if args.size < 16:
        raise AtlasError(f"--size {args.size}: give an image side of at least 16 pixels")
    images = list_images(args.images)
    labels = read_labels(args.labels, images, model_spec_of(args), args.classes) if args.labels else None
    _check_weights(args.weights, args.model)
    _check_out(args.out)
    return layers, images, labels


def cmd_examples(args: argparse.Namespace) -> int:
    from generator.passes.examples import ExamplesConfig, run_examples

    layers, images, labels = _examples_job(args)
    chosen, facts, precision, devices = _start_backend(args)
    from generator.network.models import load_model

    loaded = load_model(args.model, args.weights)
    config = ExamplesConfig(model=args.model, weights_sha256=loaded.weights_sha256, size=args.size, top=args.top,
                            images=images, name=args.images_name, license=args.images_license,
                            precision=precision, backend=chosen, labels=labels)
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
    from generator.passes.merge import merge

    if not os.path.isdir(args.out):
        raise AtlasError(f"--out {args.out}: no such folder; give the atlas folder the shards wrote into")
    lines = merge(args.out)
    print("\n".join(lines) if lines else f"nothing to merge in {args.out}: no shards waiting")
    return 0


MODEL_FILE_FLAGS = ("name", "preprocess", "custom_objects", "weights")


def _as_options(parser: argparse.ArgumentParser, args: argparse.Namespace, leave: tuple[str, ...],
                only: tuple[str, ...] | None = None) -> list[str]:
    """The options of ``parser`` that ``args`` sets to other than their defaults (of ``only`` those,
    when given), as a command line (whatever option a command gains travels without code here)."""
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
        work, _, _ = _generate_job(args)
        units, what = cluster.generate_units(work), "filters"
    else:
        _, images, _ = _examples_job(args)
        units, what = cluster.examples_units(len(images.files)), f"runs of {cluster.EXAMPLES_GRAIN} images"
    if args.shards > units:
        raise AtlasError(f"--shards {args.shards}: this job is only {units} {what}; give --shards {units} or fewer")
    parser = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    options = [command, *_as_options(parser, args, leave=("shard",))]
    model_args = ["--model", args.model, "--weights", str(args.weights)]
    if getattr(args, "model_file", None):  # the tasks read the file again, as given (they run in this folder)
        options[options.index("--model") + 1] = args.model_file
        model_args = ["--model", args.model_file, *_as_options(parser, args, leave=(), only=MODEL_FILE_FLAGS)]
    request = slurm.Request(
        command=command, options=tuple(options), shards=args.shards, out=args.out, model=args.model,
        model_args=tuple(model_args), device=args.device, partition=args.partition, time=args.time,
        gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task, compare=args.compare,
        site=not args.no_site, python=sys.executable, workdir=os.getcwd(),
    )
    return slurm.run(request, wait=args.wait, dry_run=args.dry_run)


def cmd_trust(args: argparse.Namespace) -> int:
    from generator.atlas.store import AtlasStore
    from generator.evidence.imagesets import list_images
    from generator.network.selection import parse_layers
    from generator.passes.trust import check_images, read_atlas

    _open_model(args, images=args.images)
    _check_weights(args.weights, args.model)
    layers = parse_layers(args.layers, args.model)
    images = list_images(args.images)
    _, examples = read_atlas(AtlasStore(args.out, args.model))  # refused here, before the backend loads
    check_images(examples, images, args.images)
    without = [layer.name for layer in layers if layer.name not in examples.get("layers", [])]
    if args.layers != "all" and without:
        raise AtlasError(f"--layers {args.layers}: no dataset examples of {', '.join(without)} in this atlas; run "
                         f"`atlas examples --layers {','.join(without)}` first")
    chosen, facts, precision, *_ = _start_backend(args)  # one device: the pass is forward passes only
    from generator.network.models import load_model
    from generator.passes.trust import TrustConfig, run_trust

    loaded = load_model(args.model, args.weights)
    config = TrustConfig(model=args.model, weights_sha256=loaded.weights_sha256, images=images,
                         size=examples["images"]["size"], top=examples["top"], precision=precision, backend=chosen)
    summary = run_trust(loaded, layers, config, args.out, batch=args.batch, facts=facts)
    print(summary.line())
    if summary.interrupted:
        print("interrupted: finished layers are saved; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def cmd_wiring(args: argparse.Namespace) -> int:
    user = _model_file_checks(args)
    args.weights = args.weights or ("imagenet" if not user else None)
    if not user:
        _check_weights(args.weights, args.model)
    _check_out(args.out)
    from generator.network import backend

    backend.select(None)
    from generator.network.models import load_model
    from generator.passes.wiring import write_wiring

    if user:
        _read_model_file(args)
    loaded = load_model(args.model, args.weights)
    notes: list[str] = []
    count = write_wiring(loaded, args.out, force=args.force, notes=notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wiring of {count} layers written to {args.out}/{args.model}")
    return 0


def cmd_sample_images(args: argparse.Namespace) -> int:
    from generator.evidence.imagesets import write_sample_tiles

    count, sources = write_sample_tiles(args.folder, args.size)
    print(f"{count} tiles of {args.size} px from {sources} scikit-image photographs written to {args.folder}")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    from generator.site.build import build_site

    _check_out(args.out)
    count = build_site(args.data, args.out, args.compare)
    print(f"{count} pages written to {args.out}/")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from generator import bench

    if _model_file_checks(args):
        if args.what not in ("layers", "quality", "examples"):
            raise AtlasError(f"atlas bench {args.what} runs on the atlas's own networks; a model file works with "
                             "bench layers, quality and examples")
        from generator.network import backend

        backend.select(args.backend)
        _read_model_file(args)

    return bench.main(args)


COMMANDS = {"layers": cmd_layers, "generate": cmd_generate, "examples": cmd_examples, "trust": cmd_trust,
            "wiring": cmd_wiring, "sample-images": cmd_sample_images, "site": cmd_site, "bench": cmd_bench,
            "merge": cmd_merge, "slurm": cmd_slurm}


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
