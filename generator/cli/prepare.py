"""Preparing a command: what can be told of its arguments before a backend starts, the backend started
once, and the network read once.

The command's ``args`` are read, never rewritten: ``open_network`` turns ``--model`` (a zoo network or
a model file, read here once the backend is up) and ``--weights`` into a ``Network`` object, which the
command hands down to the passes. Each check is one line naming the input and what would fix it.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, replace

from generator.errors import AtlasError
from generator.network.modelfile import ModelFile
from generator.network.zoo import ModelSpec, model_spec

CPU_HOURS_LIMIT = 1.0  # a run projected longer than this on a CPU needs --device cpu
CPU_FLOP_RATE = 0.2e12  # FLOP/s a 2-core CPU sustains on the render step (BENCHMARKS.md: 0.17-0.48)


@dataclass(frozen=True)
class Started:
    """The backend this command runs on: its name, the first device's facts, the precision, the devices."""

    backend: str
    facts: object
    precision: str
    devices: tuple


@dataclass
class Network:
    """The network a command runs on, read once: a zoo network, or a user's file as read."""

    spec: ModelSpec
    weights: str | None  # the weight source: --weights, else imagenet (zoo) or the file's own
    file: ModelFile | None = None
    started: Started | None = field(default=None, repr=False)  # the backend, once a command started it

    @property
    def name(self) -> str:
        return self.spec.name

    def load(self, seed: int = 0):
        """The model with its weights (the backend is up)."""
        from generator.network.models import load_model

        return load_model(self.file or self.spec, self.weights, seed=seed)


def model_file_checks(args: argparse.Namespace) -> bool:
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


def read_model_file(args: argparse.Namespace, notes: list[str] | None = None) -> ModelFile:
    """Read ``--model``'s file (the backend is up); its notes are printed, or kept in ``notes``."""
    from generator.network.modelfile import read_model_file as read

    read_file = read(args.model, args.name, args.preprocess, args.custom_objects)
    if notes is None:
        for note in read_file.notes:
            print(f"note: {note}", file=sys.stderr)
    else:
        notes.extend(read_file.notes)
    return read_file


def read_network(args: argparse.Namespace, notes: list[str] | None = None) -> Network:
    """``--model`` for a command that lists or measures rather than renders: a zoo network as named, or
    a user's file read under the selected backend (no device asked for); the weights as given."""
    if not model_file_checks(args):
        return Network(model_spec(args.model), args.weights)
    select_backend(args)
    read_file = read_model_file(args, notes)
    return Network(read_file.spec, args.weights, read_file)


def open_network(args: argparse.Namespace, images: str | None = None, device: bool = True) -> Network:
    """A job's ``--model``: a model file is checked (with the image folder and ``--out``, which cost
    nothing) before the backend starts to read it; a zoo network's weights default to imagenet.
    ``device``: the command computes, so the backend is started on its device (else only selected)."""
    if not model_file_checks(args):
        return Network(model_spec(args.model), args.weights or "imagenet")
    if images is not None:
        from generator.evidence.imagesets import list_images

        list_images(images)
    if getattr(args, "out", None) is not None:
        check_out(args.out)
    started = start_backend(args) if device else select_backend(args)
    read_file = read_model_file(args)
    return Network(read_file.spec, args.weights or read_file.spec.source["file"], read_file, started)


def labelled(args: argparse.Namespace, network: Network, images):
    """``--labels`` read for ``network`` (a ``LabelSet``), and the network to run: a zoo network with
    its ImageNet classifier where the labels are ImageNet's classes (synset ids, output indices or
    ``--classes imagenet``) and its weights carry one, read at 224 px; otherwise the network as it is,
    whose labels give the filters' class shares (said in a note)."""
    from generator.evidence.label_files import INTEGER, SYNSET
    from generator.evidence.labels import read_labels
    from generator.network.classifier import has_classifier

    spec = network.spec
    labels = read_labels(args.labels, images, spec, args.classes)
    if not (spec.zoo and spec.top_file):
        return labels, network
    names = labels.classes
    imagenet = args.classes == "imagenet" or len(names) == 1000 or all(SYNSET.match(c) for c in names) or (
        args.labels != "folders" and args.classes is None and all(INTEGER.match(c) and int(c) < 1000 for c in names))
    why = None
    if not imagenet:
        why = "the labels are not ImageNet's classes (give --classes imagenet if they are its output indices)"
    elif not has_classifier(network.weights):
        why = f"--weights {network.weights} holds no classifier"
    elif args.size not in (None, 224):
        why = f"its classifier reads 224 px images, not --size {args.size}"
    if why:
        print(f"note: {spec.title}'s classifier is left out: {why}; the labels give each filter's class shares",
              file=sys.stderr)
        return labels, network
    whole = replace(network, spec=spec.classifier)
    return read_labels(args.labels, images, whole.spec, args.classes), whole


def model_file_line(spec: ModelSpec) -> str:
    size = f"{spec.input_size}x{spec.input_size}" if spec.input_size else "any size"
    head = f"a classifier of {spec.head['classes']} classes" if spec.head else "no classifier"
    return (f"{spec.name}: {spec.source['file']} (sha256 {spec.source['sha256'][:16]}), input {size} "
            f"{'grayscale' if spec.channels == 1 else 'RGB'}, preprocessing {spec.preprocessing.key} "
            f"({spec.source['preprocessing_from']}), {head}")


def image_size(args: argparse.Namespace, spec: ModelSpec, default: int, strict: bool = False) -> int:
    """``--size``, or its default (a network whose input is fixed: its side); ``strict``: a network
    whose input is fixed reads its own side only (its classifier needs it)."""
    fixed = spec.input_size
    if args.size is None:
        return fixed or default
    if strict and fixed and args.size != fixed:
        raise AtlasError(f"--size {args.size}: {spec.name} reads {fixed}x{fixed} images only (its input is fixed); "
                         "leave --size out")
    return args.size


def check_weights(weights: str, spec: ModelSpec) -> None:
    """What can be told of a weight source without loading anything."""
    from generator.network.weights import HED_MODELS, SOURCES

    if not spec.zoo:
        return  # a model file's weights are checked as they load
    if weights in SOURCES:
        if weights == "hed-bsds500" and spec.name not in HED_MODELS:
            raise AtlasError(f"--weights hed-bsds500 is a VGG16 backbone, not {spec.name}; use imagenet, random or a path")
        return
    if not weights.endswith((".h5", ".keras")):
        raise AtlasError(f"--weights {weights!r}: not a weight source; use {', '.join(SOURCES)} or the path of a "
                         ".h5 / .weights.h5 file")
    if not os.path.isfile(weights):
        raise AtlasError(f"{weights}: no such weights file; give the path of a .h5 / .weights.h5")


def check_out(out: str) -> None:
    path = os.path.abspath(out)
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise AtlasError(f"--out {out}: cannot write there ({probe} is not a writable folder); choose another")


def select_backend(args: argparse.Namespace) -> None:
    """Import the backend without asking for a device (listing layers, wiring, reading a file)."""
    from generator.network import backend

    backend.select(getattr(args, "backend", None))


def start_backend(args: argparse.Namespace) -> Started:
    """Import the backend (the slow part) and say which device and precision this run uses."""
    from generator.network import backend

    chosen = backend.select(args.backend, args.device)
    devices = backend.compute_devices(getattr(args, "devices", None))
    facts = devices[0].facts
    precision = backend.resolve_precision(args.precision, facts)
    print(f"{chosen} on {backend.describe_devices(devices)}, {precision}", file=sys.stderr)
    return Started(chosen, facts, precision, tuple(devices))


def backend_of(args: argparse.Namespace, network: Network) -> Started:
    """The backend ``network`` was read under, or started now."""
    if network.started is None:
        network.started = start_backend(args)
    return network.started


def cpu_hours(work, views, config) -> float:
    from generator.render.views import views_of

    def pictures_of(layer) -> float:
        """Pictures a filter of ``layer`` gets, in full-size pictures (a field view's canvas is smaller)."""
        return sum(v.images * (v.canvas(layer, config.size) / config.size) ** 2 for v in views_of(views, layer, config.size))

    pictures = sum(len(filters) * pictures_of(layer) for layer, filters in work)
    flop = sum(3 * layer.forward_flop(config.size) * len(filters) * pictures_of(layer)
               for layer, filters in work) * config.steps
    return flop / CPU_FLOP_RATE / 3600 if pictures else 0.0
