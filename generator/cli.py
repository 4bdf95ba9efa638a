"""The ``atlas`` command: ``layers``, ``generate``, ``site``, ``bench``.

Every problem with the input ends in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys

from generator.errors import AtlasError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="atlas", description="VGG16 Filter Atlas generator")
    sub = parser.add_subparsers(dest="command", required=True)

    layers = sub.add_parser("layers", help="list the conv layers of the model")
    layers.add_argument("--model", default="vgg16")
    layers.add_argument("--weights", default=None, help="also load these weights (checks them)")
    layers.add_argument("--size", type=_positive_int, default=128, help="input side for the output sizes")

    gen = sub.add_parser("generate", help="render filter visualizations into the atlas folder")
    gen.add_argument("--model", default="vgg16")
    gen.add_argument("--weights", default="imagenet", help="imagenet | hed-bsds500 | random | PATH.h5")
    gen.add_argument("--layers", default="all", help="all, or block3_conv3,block5_conv1")
    gen.add_argument("--filters", default="all", help="all, 0-15 or 3,7 (per layer)")
    gen.add_argument("--size", type=_positive_int, default=128)
    gen.add_argument("--steps", type=_positive_int, default=256)
    gen.add_argument("--lr", type=_positive_float, default=None, help="default: lucid 0.05, naive 10")
    gen.add_argument("--method", default="lucid", choices=("lucid", "naive"))
    gen.add_argument("--precision", default="auto",
                     choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"))
    gen.add_argument("--backend", default=None, choices=("tensorflow", "jax"),
                     help="default: KERAS_BACKEND or tensorflow")
    gen.add_argument("--batch", type=_batch, default=None, help="auto or rows per batch")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", default="atlas")
    gen.add_argument("--force", action="store_true", help="replace an atlas made with other settings")

    site = sub.add_parser("site", help="render the MkDocs pages from a stored atlas")
    site.add_argument("--data", default="atlas")
    site.add_argument("--out", default="site_src")
    site.add_argument("--model", default="vgg16")
    site.add_argument("--compare", default=None,
                      help="an atlas of the same filters by the original method (--method naive), for the Method page")

    bench = sub.add_parser("bench", help="speed, quality and site-build benchmarks")
    bench.add_argument("what", choices=("speed", "quality", "site", "layers"))
    bench.add_argument("--weights", default="hed-bsds500")
    bench.add_argument("--backend", default=None, choices=("tensorflow", "jax"))
    bench.add_argument("--size", type=_positive_int, default=None)
    bench.add_argument("--steps", type=_positive_int, default=None)
    bench.add_argument("--sample", type=_positive_int, default=16, help="filters per layer (quality)")
    bench.add_argument("--layers", default="all")
    bench.add_argument("--batch", type=_positive_int, default=None, help="layers: rows per batch")
    bench.add_argument("--variants", default="naive,lucid-port,relu-objective,wake,contrast-start,lucid",
                       help="quality: methods to compare")
    bench.add_argument("--naive-original", action="store_true",
                       help="quality: run naive at the original script's 96 px, 50 steps")
    bench.add_argument("--out", default="BENCHMARKS.md")
    return parser


def cmd_layers(args: argparse.Namespace) -> int:
    from generator.models import check_model_name, conv_layers

    check_model_name(args.model)
    if args.weights:
        from generator import backend

        backend.select(None)
        from generator.models import load_model

        loaded = load_model(args.model, args.weights)
        print(f"weights: {loaded.weights} sha256 {loaded.weights_sha256[:16]}")
    rows = [("block", "layer", "filters", "receptive field", f"output at {args.size}px")]
    for layer in conv_layers(args.model):
        side = layer.output_size(args.size)
        rows.append((str(layer.block), layer.name, str(layer.filters), f"{layer.receptive_field} px",
                     f"{side}x{side}"))
    total = sum(layer.filters for layer in conv_layers(args.model))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"total: {len(rows) - 1} layers, {total:,} filters")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from generator import backend
    from generator.models import check_model_name

    check_model_name(args.model)
    chosen = backend.select(args.backend)
    from generator.config import DEFAULT_LR, RenderConfig
    from generator.generate import generate
    from generator.selection import parse_filters, parse_layers

    layers = parse_layers(args.layers, args.model)
    work = [(layer, parse_filters(args.filters, layer)) for layer in layers]
    config = RenderConfig(
        model=args.model, weights=str(args.weights), method=args.method, size=args.size, steps=args.steps,
        lr=args.lr or DEFAULT_LR[args.method], seed=args.seed,
        precision=backend.resolve_precision(args.precision), backend=chosen,
    )
    for layer, _ in work:
        config.check_layer(layer)  # before the (slow) model load: bad input writes nothing
    _check_out(args.out)
    from generator.models import load_model

    loaded = load_model(args.model, args.weights, seed=args.seed)
    config = dataclasses.replace(config, weights_sha256=loaded.weights_sha256)
    summary = generate(loaded, config, work, args.out, batch=args.batch, force=args.force)
    print(
        f"{summary.rendered} filters rendered, {summary.skipped} already done, {summary.dead} dead, "
        f"{summary.retried} redone in float32, {summary.seconds:.1f} s; atlas in {args.out}/{args.model} "
        f"(config {config.hash}, {config.precision}, {chosen})"
    )
    if summary.interrupted:
        print("interrupted: finished batches are saved; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _check_out(out: str) -> None:
    path = os.path.abspath(out)
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise AtlasError(f"--out {out}: cannot write there ({probe} is not a writable folder); choose another")


def cmd_site(args: argparse.Namespace) -> int:
    from generator.site import build_site

    count = build_site(args.data, args.out, args.model, args.compare)
    print(f"{count} pages written to {args.out}/")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from generator import bench

    return bench.main(args)


COMMANDS = {"layers": cmd_layers, "generate": cmd_generate, "site": cmd_site, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
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
