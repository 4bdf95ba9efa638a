"""The ``atlas`` command's arguments: one parser, its option types, and every subcommand's options.

Argument errors are one line (the usage is one ``--help`` away) and exit code 2; nothing here imports a
backend, so a bad argument is refused at once.
"""

from __future__ import annotations

import argparse
import math

from generator.errors import AtlasError
from generator.network.zoo import MODELS

EXIT_ERROR = 2


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
    _layers_parser(sub)
    gen = _generate_parser(sub)
    ex = _examples_parser(sub)
    _trust_parser(sub)
    _small_parsers(sub)
    _bench_parser(sub)
    merge = sub.add_parser("merge", help="join the finished shards of a job into the atlas (after --shard K/N runs)")
    merge.add_argument("--out", default="atlas", help="the atlas folder the shards wrote into")
    merge.add_argument("--forget-shards", action="store_true",
                       help="give up the jobs some of whose shards never finished (their rendered filters stay)")
    # Built last, from the finished generate and examples parsers: every option they have travels to the tasks.
    _slurm_parser(sub, gen, ex)
    return parser


def _layers_parser(sub) -> None:
    layers = sub.add_parser("layers", help="list the visualizable layers of a model")
    layers.add_argument("--model", default="vgg16", type=_model, help="vgg16 | vgg19 | resnet50 | PATH.keras | PATH.h5")
    layers.add_argument("--weights", default=None, help="also load these weights (checks them)")
    _model_file_args(layers)
    layers.add_argument("--size", type=_positive_int, default=None, help="input side for the map sizes (default 128)")


def _generate_parser(sub) -> argparse.ArgumentParser:
    gen = sub.add_parser("generate", help="render filter visualizations into the atlas folder")
    _model_args(gen)
    gen.add_argument("--layers", default="all", help="all, or block3_conv3,block5_conv1")
    gen.add_argument("--filters", default="all", help="all, 0-15 or 3,7 (per layer)")
    gen.add_argument("--views", default="channel", help="channel,neuron,negative,diversity,field,accentuation or all (field: layers whose "
                     "receptive field is under a quarter of --size; accentuation: filters with dataset examples)")
    gen.add_argument("--images", default=None, help="accentuation: the folder the dataset examples came from "
                     "(default: the atlas's own, found by name)")
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
    return gen


def _examples_parser(sub) -> argparse.ArgumentParser:
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
    return ex


def _trust_parser(sub) -> None:
    trust = sub.add_parser("trust", help="how far to trust each picture: checks against the filter's dataset examples")
    trust.add_argument("--images", default=None,
                       help="the folder of images the dataset examples came from (default: the atlas's own, found by name)")
    _model_args(trust)
    trust.set_defaults(model=None)  # the atlas's own model, its weights and image folder unless given
    trust.add_argument("--layers", default="all", help="all (every layer with dataset examples), or a list")
    _device_args(trust)
    trust.add_argument("--out", default="atlas")


def _small_parsers(sub) -> None:
    """wiring, sample-images and site."""
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
    site.add_argument("--assets-url", default=None, metavar="URL",
                      help="serve the pictures from URL (a bucket): pages link URL/<content hash>.<ext>, and the "
                           "pictures go to --assets-dir to upload there; the pages alone then publish (past 1 GB)")
    site.add_argument("--assets-dir", default=None, metavar="DIR",
                      help="with --assets-url: the folder of pictures to upload (default: site-assets beside --out)")
    site.add_argument("--models", default=None, metavar="A,B",
                      help="only these models of the atlas: each model its own site")


def _bench_parser(sub) -> None:
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
    bench.add_argument("--assets-url", default=None, metavar="URL",
                       help="site: the pictures split off to URL (atlas site --assets-url): the pages' size alone")
    bench.add_argument("--keep", default=None, metavar="DIR",
                       help="site: keep the synthetic atlas in DIR and reuse it next time (writing it is most of the ResNet50 run)")
    bench.add_argument("--out", default="BENCHMARKS.md")


def _slurm_parser(sub, gen: argparse.ArgumentParser, ex: argparse.ArgumentParser) -> None:
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
