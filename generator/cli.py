"""The ``atlas`` command: ``layers``, ``generate``, ``examples``, ``trust``, ``wiring``, ``sample-images``,
``site``, ``bench``.

Every problem with the input ends in one line on stderr and a non-zero exit, never a traceback; the
arguments are checked before TensorFlow or JAX is imported, so a bad one is refused at once.
"""

from __future__ import annotations

import argparse
import dataclasses
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
    gen.add_argument("--force", action="store_true", help="replace an atlas made with other settings")

    ex = sub.add_parser("examples", help="find the real image patches that drive each filter up and down")
    ex.add_argument("--images", required=True, help="a folder of JPEG/PNG/WebP/BMP images (searched recursively)")
    _model_args(ex)
    ex.add_argument("--layers", default="all")
    ex.add_argument("--top", type=_positive_int, default=16, help="examples kept per filter, each way")
    ex.add_argument("--size", type=_positive_int, default=224, help="images are resized and centre-cropped to this")
    _device_args(ex)
    ex.add_argument("--checkpoint", type=_positive_int, default=1024, help="images between checkpoints of the pass")
    ex.add_argument("--images-name", default=None, help="the image set's name, shown beside its crops")
    ex.add_argument("--images-license", default=None, help="its licence, shown beside its crops")
    ex.add_argument("--out", default="atlas")
    ex.add_argument("--force", action="store_true", help="replace examples made from another image set or size")

    trust = sub.add_parser("trust", help="how far to trust each picture: checks against the filter's dataset examples")
    trust.add_argument("--images", required=True, help="the folder of images the dataset examples came from")
    _model_args(trust)
    trust.add_argument("--layers", default="all", help="all (every layer with dataset examples), or a list")
    _device_args(trust)
    trust.add_argument("--out", default="atlas")

    wiring = sub.add_parser("wiring", help="each filter's strongest inputs and outputs, from the weights")
    _model_args(wiring)
    wiring.add_argument("--out", default="atlas")

    sample = sub.add_parser("sample-images", help="an offline image set cut from scikit-image's photographs")
    sample.add_argument("folder", help="where to write the tiles")
    sample.add_argument("--size", type=_positive_int, default=96)

    site = sub.add_parser("site", help="render the MkDocs pages from a stored atlas")
    site.add_argument("--data", default="atlas")
    site.add_argument("--out", default="site_src")
    site.add_argument("--compare", default=None,
                      help="an atlas of the same filters by the original method (--method naive), for the Method page")

    bench = sub.add_parser("bench", help="speed, quality, examples, GPU and site-build benchmarks")
    bench.add_argument("what", choices=("speed", "quality", "site", "layers", "examples", "gpu", "trust"))
    bench.add_argument("--model", default="vgg16", choices=tuple(MODELS))
    bench.add_argument("--weights", default=None, help="default: hed-bsds500 for vgg16, random otherwise")
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
    bench.add_argument("--reduced", action="store_true", help="gpu: a minutes-long smoke run (CI, CPU)")
    bench.add_argument("--keep", default=None, metavar="DIR",
                       help="site: keep the synthetic atlas in DIR and reuse it next time (writing it is most of the ResNet50 run)")
    bench.add_argument("--out", default="BENCHMARKS.md")
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
    facts = backend.device_facts()
    precision = backend.resolve_precision(args.precision, facts)
    print(f"{chosen} on {facts.describe()}, {precision}", file=sys.stderr)
    return chosen, facts, precision


def cmd_generate(args: argparse.Namespace) -> int:
    from generator.config import DEFAULT_LR, RenderConfig
    from generator.selection import parse_filters, parse_layers
    from generator.views import parse_views

    layers = parse_layers(args.layers, args.model)
    work = [(layer, parse_filters(args.filters, layer)) for layer in layers]
    views = parse_views(args.views)
    if args.method == "naive" and [v.name for v in views] != ["channel"]:
        raise AtlasError(f"--views {args.views}: the naive method renders the channel view only")
    config = RenderConfig(
        model=args.model, weights=str(args.weights), method=args.method, size=args.size, steps=args.steps,
        lr=args.lr or DEFAULT_LR[args.method], seed=args.seed,
    )
    for layer, _ in work:
        config.check_layer(layer)
    _check_weights(args.weights, args.model)
    _check_out(args.out)
    chosen, facts, precision = _start_backend(args)
    config = dataclasses.replace(config, precision=precision, backend=chosen)
    if facts.kind == "cpu" and args.device == "auto":
        hours = _cpu_hours(work, views, config)
        if hours > CPU_HOURS_LIMIT:
            raise AtlasError(
                f"no GPU found: this run ({sum(len(f) for _, f in work) * len(views):,} filter views at "
                f"{config.size} px, {config.steps} steps) would take about {hours:.0f} hours on a CPU like "
                "this project's 2-core machines; add --device cpu to run it here anyway, or run on a GPU "
                "(make install sets one up on NVIDIA machines)"
            )
    from generator.generate import generate
    from generator.models import load_model

    loaded = load_model(args.model, args.weights, seed=args.seed)
    config = dataclasses.replace(config, weights_sha256=loaded.weights_sha256)
    summary = generate(loaded, config, work, args.out, views=views, batch=args.batch, force=args.force, facts=facts)
    print(
        f"{summary.rendered} filter views rendered, {summary.skipped} already done, {summary.dead} dead, "
        f"{summary.retried} redone in float32, {summary.seconds:.1f} s; atlas in {args.out}/{args.model} "
        f"(config {config.hash}, {config.precision}, {chosen})"
    )
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


def cmd_examples(args: argparse.Namespace) -> int:
    from generator.examples import ExamplesConfig, run_examples
    from generator.imagesets import list_images
    from generator.selection import parse_layers

    layers = parse_layers(args.layers, args.model)
    if args.size < 16:
        raise AtlasError(f"--size {args.size}: give an image side of at least 16 pixels")
    images = list_images(args.images)
    _check_weights(args.weights, args.model)
    _check_out(args.out)
    chosen, facts, precision = _start_backend(args)
    from generator.models import load_model

    loaded = load_model(args.model, args.weights)
    config = ExamplesConfig(model=args.model, weights_sha256=loaded.weights_sha256, size=args.size, top=args.top,
                            images=images, name=args.images_name, license=args.images_license,
                            precision=precision, backend=chosen)
    summary = run_examples(loaded, layers, config, args.out, batch=args.batch, force=args.force, facts=facts,
                           checkpoint=args.checkpoint)
    print(summary.line())
    if summary.interrupted:
        print("interrupted: the pass is checkpointed; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    from generator.imagesets import list_images
    from generator.selection import parse_layers
    from generator.store import AtlasStore
    from generator.trust import check_images, read_atlas

    layers = parse_layers(args.layers, args.model)
    images = list_images(args.images)
    _check_weights(args.weights, args.model)
    _, examples = read_atlas(AtlasStore(args.out, args.model))  # refused here, before the backend loads
    check_images(examples, images, args.images)
    without = [layer.name for layer in layers if layer.name not in examples.get("layers", [])]
    if args.layers != "all" and without:
        raise AtlasError(f"--layers {args.layers}: no dataset examples of {', '.join(without)} in this atlas; run "
                         f"`atlas examples --layers {','.join(without)}` first")
    chosen, facts, precision, *_ = _start_backend(args)  # one device: the pass is forward passes only
    from generator.models import load_model
    from generator.trust import TrustConfig, run_trust

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
    _check_weights(args.weights, args.model)
    _check_out(args.out)
    from generator import backend

    backend.select(None)
    from generator.models import load_model
    from generator.wiring import write_wiring

    loaded = load_model(args.model, args.weights)
    count = write_wiring(loaded, args.out)
    print(f"wiring of {count} layers written to {args.out}/{args.model}")
    return 0


def cmd_sample_images(args: argparse.Namespace) -> int:
    from generator.imagesets import write_sample_tiles

    count, sources = write_sample_tiles(args.folder, args.size)
    print(f"{count} tiles of {args.size} px from {sources} scikit-image photographs written to {args.folder}")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    from generator.site import build_site

    count = build_site(args.data, args.out, args.compare)
    print(f"{count} pages written to {args.out}/")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from generator import bench

    return bench.main(args)


COMMANDS = {"layers": cmd_layers, "generate": cmd_generate, "examples": cmd_examples, "trust": cmd_trust, "wiring": cmd_wiring,
            "sample-images": cmd_sample_images, "site": cmd_site, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    from generator import quiet

    quiet.environment()
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except AtlasError as exc:
        print(f"atlas {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("atlas: stopped; finished files are saved, rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
