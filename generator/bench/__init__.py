"""``atlas bench``: speed, quality, examples, GPU, site-build and shard-split and trust figures, written into BENCHMARKS.md.

Each figure is measured in the same run as its baseline (machines here differ by up to 6x for the same
command), and each section of BENCHMARKS.md names the machine and the command that produced it.
Nothing here is asserted: benchmarks report, tests check.
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import time
from pathlib import Path

from generator.render.config import METHOD_VERSION

SECTIONS = {
    "speed": "generator.bench.speed",
    "quality": "generator.bench.quality",
    "layers": "generator.bench.layers",
    "site": "generator.bench.site",
    "examples": "generator.bench.examples",
    "gpu": "generator.bench.gpu",
    "shards": "generator.bench.shards",
    "trust": "generator.bench.trust",
}


def machine() -> str:
    """The machine a figure was measured on, in words (the backend must be selected)."""
    from generator.network import backend

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    facts = backend.device_facts()
    device = "no GPU" if facts.kind == "cpu" else facts.describe()
    return f"{backend.cpu_name()}, {mem:.0f} GiB, {device}, {platform.system()} {platform.release()}"


def default_weights(args, network) -> str:
    """``--weights``, else the offline backbone for VGG16, a model file's own, random for the others."""
    if args.weights or network.file is not None:
        return args.weights or network.weights
    return "hed-bsds500" if network.name == "vgg16" else "random"


def load(network, weights: str):
    """The bench's network with ``weights`` (the backend is up)."""
    from generator.network.models import load_model

    return load_model(network.file or network.spec, weights)


def write_section(path: Path, name: str, text: str) -> None:
    """Replace (or append) the section between ``<!-- bench:name -->`` markers."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{text.strip()}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in old and end in old:
        new = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, old, flags=re.S)
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


def main(args, network) -> int:
    """Run one bench on ``network`` (``generator.cli.prepare.Network``: the model read once) and write its
    section of BENCHMARKS.md."""
    module = importlib.import_module(SECTIONS[args.what])
    name, text = module.run(args, network)
    # The method version says which pictures a figure belongs to, long after the date is forgotten.
    section = f"{text}\n\n_Measured {time.strftime('%Y-%m-%d')}, method version {METHOD_VERSION}._"
    write_section(Path(args.out), name, section)
    print(text)
    return 0
