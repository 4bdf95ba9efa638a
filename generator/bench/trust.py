"""``atlas bench trust``: the trust scores per layer of the original method's pictures and ours, on the
same sampled filters, dataset examples and network; and whether the dead-ish pictures are the least
trusted."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from generator.errors import AtlasError

EXAMPLES_TOP = 16  # atlas examples' default


def _quiet(total: int):
    from generator.progress import Progress

    return Progress(total, open(os.devnull, "w"))


def _render(loaded, method: str, layers, filters: dict, size: int, steps: int, out: str, precision: str) -> dict:
    """One atlas of the sampled filters: lucid with its diversity view and, in the layers it applies to,
    its field view; naive (channel only)."""
    from generator.network import backend
    from generator.passes.generate import generate
    from generator.render.config import DEFAULT_LR, RenderConfig
    from generator.render.views import CHANNEL, DIVERSITY, FIELD, views_of

    config = RenderConfig(model=loaded.name, weights=loaded.weights, weights_sha256=loaded.weights_sha256,
                          method=method, size=size, steps=steps, lr=DEFAULT_LR[method], precision=precision,
                          backend=backend.name())
    views = [CHANNEL, DIVERSITY, FIELD] if method == "lucid" else [CHANNEL]
    work = [(layer, filters[layer.name]) for layer in layers]
    start = time.monotonic()
    total = sum(len(f) * len(views_of(views, layer, size)) for layer, f in work)
    summary = generate(loaded, config, work, out, views=views, progress=_quiet(total))
    if summary.failed:
        raise AtlasError(f"bench trust: {method} pictures went non-finite: {', '.join(summary.failed[:3])}")
    return {"config": config, "seconds": time.monotonic() - start}


def _accentuate(loaded, config, layers, filters: dict, out: str, images) -> float:
    """The accentuation view of the sampled filters, from their dataset examples (copied in already)."""
    from generator.passes.generate import generate
    from generator.render.views import ACCENTUATION

    work = [(layer, filters[layer.name]) for layer in layers]
    start = time.monotonic()
    summary = generate(loaded, config, work, out, views=[ACCENTUATION], images=images,
                       progress=_quiet(sum(len(f) for _, f in work)))
    if summary.failed:
        raise AtlasError(f"bench trust: accentuation pictures went non-finite: {', '.join(summary.failed[:3])}")
    return time.monotonic() - start


def _copy_examples(loaded, source: str, out: str, layers, filters: dict) -> None:
    """The sampled filters' dataset examples of one bench atlas into another, with the manifest's record."""
    import shutil

    from generator.atlas.files import read_json
    from generator.atlas.store import AtlasStore

    src, dst = AtlasStore(source, loaded.name), AtlasStore(out, loaded.name)
    for layer in layers:
        for f in filters[layer.name]:
            shutil.copyfile(src.paths.examples_json(layer.name, f), dst.paths.examples_json(layer.name, f))
            shutil.copyfile(src.paths.examples_sprite(layer.name, f), dst.paths.examples_sprite(layer.name, f))
    dst.write_manifest(None, loaded, extra={"examples": read_json(src.paths.manifest, "manifest")["examples"]})


def linear_maximum(loaded, layer) -> np.ndarray | None:
    """(filters,) the exact maximum of a first layer's pre-activation over 8-bit pictures, or None where
    its kernel does not read the picture's pixels directly.

    A first convolution is linear in the pixels (the preprocessing is per pixel and affine), so its
    maximum has a closed form: every pixel of the patch at 255 where raising it raises the filter, at 0
    elsewhere (the issue's "each pixel at 0 or 255 by the sign of its weight, after the mean")."""
    from generator.network import inputs

    kernel, bias = loaded.layer_weights(layer.tap)[:2]
    mode = loaded.spec.preprocessing
    black = inputs.from_uint8(np.zeros((1, 1, 3), np.uint8), mode)[0, 0]  # (in,) a black pixel, as the net sees it
    if black.shape[-1] != kernel.shape[2]:
        return None
    lift = np.stack([inputs.from_uint8(np.eye(3, dtype=np.uint8)[c][None, None] * 255, mode)[0, 0] - black
                     for c in range(3)])  # (3 RGB, in): what raising one RGB value from 0 to 255 adds
    base = bias + np.einsum("ijcf,c->f", kernel, black)
    gain = np.einsum("ijcf,rc->ijrf", kernel, lift)  # (k, k, 3 RGB, filters): each pixel value's effect
    return (base + np.maximum(gain, 0.0).sum(axis=(0, 1, 2))).astype(np.float64)


def _scores(out: str, model: str, layers, filters: dict, loaded=None) -> dict:
    """Per layer, per filter: the trust summary and whether the picture is dead-ish (dead, or a blob)."""
    import json

    from generator.paths import AtlasPaths
    from generator.render.quality import BLOB_COVERAGE

    paths = AtlasPaths(Path(out), model)
    table = {}
    for layer in layers:
        rows = []
        for f in filters[layer.name]:
            record = json.loads(paths.filter_json(layer.name, f).read_text())
            coverage = record.get("coverage")
            deadish = bool(record.get("dead")) or (coverage is not None and coverage <= BLOB_COVERAGE)
            rows.append({"filter": f, "deadish": deadish, **record["trust"]["summary"]})
        if layer.index == 0:
            top = linear_maximum(loaded, layer)
            for row in rows:
                row["closed_form"] = None if top is None else float(top[row["filter"]])
        table[layer.name] = rows
    return table


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.median(values)) if values else None


def _f(value: float | None, kind: str = "number") -> str:
    if value is None:
        return "–"
    if kind == "times":
        return f"×{value:.0f}" if value >= 10 else f"×{value:.2g}"
    return f"{value:.2f}"


def _least_trusted(rows: list[dict], key: str) -> tuple[int, int, float | None, float | None]:
    """Of the dead-ish pictures (n), how many are among the n least trusted by ``key``; their mean
    score and the others'."""
    scored = [r for r in rows if r.get(key) is not None]
    n = sum(r["deadish"] for r in scored)
    if not n:
        return 0, 0, None, _mean(scored, key)
    lowest = sorted(scored, key=lambda r: r[key])[:n]
    return n, sum(r["deadish"] for r in lowest), _mean([r for r in scored if r["deadish"]], key), \
        _mean([r for r in scored if not r["deadish"]], key)


def run(args, network) -> tuple[str, str]:
    from generator.bench import default_weights, load
    from generator.network import backend

    backend.select(args.backend)
    from generator.evidence.imagesets import list_images, write_sample_tiles
    from generator.network.selection import parse_layers, sample_filters
    from generator.passes.examples import run_examples
    from generator.passes.examples_config import ExamplesConfig
    from generator.passes.trust import TrustConfig, run_trust

    size, steps = args.size or 96, args.steps or 64
    naive_size, naive_steps = (96, 50) if args.naive_original else (size, steps)
    weights = default_weights(args, network)
    precision = args.precision or "float32"
    loaded = load(network, weights)
    layers = parse_layers(args.layers, network.spec)
    filters = {layer.name: sample_filters(layer, args.sample, args.offset) for layer in layers}
    count = sum(len(f) for f in filters.values())
    results, timings = {}, {}
    with tempfile.TemporaryDirectory(prefix="atlas-trust-bench-") as tmp:
        folder = Path(args.images) if args.images else Path(tmp) / "tiles"
        if not args.images:
            write_sample_tiles(folder, 96)
        images = list_images(folder)
        examples_size = 96 if not args.images else 224
        for method, (m_size, m_steps) in (("naive", (naive_size, naive_steps)), ("lucid", (size, steps))):
            out = str(Path(tmp) / method)
            rendered = _render(loaded, method, layers, filters, m_size, m_steps, out, precision)
            print(f"bench trust: {method} pictures in {rendered['seconds']:.0f} s", file=sys.stderr, flush=True)
            start = time.monotonic()
            if method == "naive":
                run_examples(loaded, layers, ExamplesConfig(model=network.name, weights_sha256=loaded.weights_sha256,
                                                            size=examples_size, top=EXAMPLES_TOP, images=images,
                                                            precision=precision, backend=backend.name()),
                             out, progress=_quiet(len(images.files)))
            else:  # the same network and images: the same examples, copied rather than found again
                _copy_examples(loaded, str(Path(tmp) / "naive"), out, layers, filters)
            examples_seconds = time.monotonic() - start
            if method == "lucid":  # the view that starts from the strongest example, scored by trust too
                accent_seconds = _accentuate(loaded, rendered["config"], layers, filters, out, images)
            start = time.monotonic()
            config = TrustConfig(model=network.name, weights_sha256=loaded.weights_sha256, images=images,
                                 size=examples_size, top=EXAMPLES_TOP, precision=precision, backend=backend.name())
            summary = run_trust(loaded, layers, config, out, progress=_quiet(1))
            timings[method] = (rendered["seconds"], examples_seconds, time.monotonic() - start)
            print(f"bench trust: {method} trust in {timings[method][2]:.0f} s ({summary.line()})", file=sys.stderr,
                  flush=True)
            results[method] = _scores(out, network.name, layers, filters, loaded)
    return _section(args, results, (timings, accent_seconds), layers, count, size, steps, naive_size, naive_steps,
                    weights, precision, len(images.files), examples_size)


def _section(args, results, times, layers, count, size, steps, naive_size, naive_steps, weights, precision,
             image_count, examples_size) -> tuple[str, str]:
    from generator.bench import machine
    from generator.network import backend

    naive, lucid = results["naive"], results["lucid"]
    timings, accent_seconds = times
    head = ("| layer | two-image: naive | lucid | natural reference | path: naive | lucid | natural reference "
            "| random photo's path | beyond nature: naive | lucid | seeds: lucid | other filters' seeds "
            "| dead-ish: naive | lucid | accentuation: two-image | path | beyond nature "
            "| field view: two-image | path | beyond nature |\n"
            "| --- |" + " ---: |" * 19)
    lines = [head]
    every = {"naive": [], "lucid": []}
    for layer in layers:
        n, o = naive[layer.name], lucid[layer.name]
        every["naive"] += n
        every["lucid"] += o
        lines.append(f"| {layer.name} | " + " | ".join(_row(n, o)) + " |")
    lines.append("| **all sampled** | " + " | ".join(f"**{c}**" for c in _row(every["naive"], every["lucid"])) + " |")
    pooled = every["naive"] + every["lucid"]
    checks = []
    for key, label in (("two_image", "two-image prediction"), ("path", "path similarity")):
        n, among, dead_mean, other_mean = _least_trusted(pooled, key)
        checks.append(f"| {label} | {n} | {among} of {n} | {_f(dead_mean)} | {_f(other_mean)} |")
    offset_flag = f" --offset {args.offset}" if args.offset else ""
    command = (f"atlas bench trust --model {args.model} --weights {weights} --size {size} --steps {steps} "
               f"--sample {args.sample}{offset_flag}{' --naive-original' if args.naive_original else ''}"
               f"{' --precision ' + precision if args.precision else ''}"
               f"{' --images ' + args.images if args.images else ''}"
               f"{'' if args.layers == 'all' else ' --layers ' + args.layers}")
    seconds = "; ".join(f"`{m}` pictures {t[0]:.0f} s, examples {t[1]:.0f} s, trust {t[2]:.0f} s" for m, t in timings.items())
    seconds += f" (`lucid`'s examples are `naive`'s, copied); the accentuation pictures {accent_seconds:.0f} s"
    text = (
        f"### Trust of {args.model}'s pictures: {args.sample} filters per layer, `lucid` at {size} px, {steps} steps, "
        f"`naive` at {naive_size} px, {naive_steps} steps\n\n"
        f"Machine: {machine()}. Backend {backend.name()}, {precision}. Command: `{command}`. {count} filters; "
        f"dataset examples (top and bottom {EXAMPLES_TOP}) from {image_count} images at {examples_size} px"
        f"{'' if args.images else ' (the sample-images tiles)'}; `lucid` with its diversity view and, where the "
        f"receptive field is under a quarter of the picture, its field view. Time: {seconds}.\n\n"
        "Means over the sampled filters of each layer. Two-image: share of (top, bottom) example pairs whose top "
        "one is closer to the picture at the layer before (0.50 is chance). Path: Spearman correlation of the "
        "picture's activations with the top examples' mean, averaged over the layers up to the filter's; the "
        "random photo's is the baseline (the same for both methods). Natural reference: the same two scores of the "
        "filter's strongest photo held out and used as the picture (what a real image achieves). Beyond nature (the median): the picture's peak "
        "over the strongest photo's. Seeds: mean cosine similarity of the four diversity pictures at the layer, beside "
        "four other filters' pictures. Dead-ish: dead or a blob (coverage ≤ 0.25). Accentuation: the view "
        "that starts from the filter's strongest photo and raises the filter while an earlier layer is held near "
        "the photo's (lucid's settings), scored as the natural reference is, against the other top examples; its "
        "beyond nature is its strongest unit over that photo's. Field view: the early layers' picture at their own "
        "scale (the centre unit on a canvas four receptive fields wide), scored as the channel picture is, at its "
        "strongest unit against the examples' receptive fields; its beyond nature is that unit over the strongest "
        "photo's (the median).\n\n"
        + "\n".join(lines)
        + "\n\nThe maximum: does each `lucid` picture excite its filter at least as much as the strongest photo "
        "(its peak unit before the ReLU over the photo's)? Where no photo turns the filter on (the strongest "
        "photo's value is 0 or below) the ratio means nothing; such filters are counted apart, with both values. "
        "The first layer is linear in the pixels, so its true maximum has a closed form (each pixel of the patch "
        "at 0 or 255 by the sign of its effect): the median share of it that the picture and the strongest photo "
        "reach.\n\n" + _maximum(layers, lucid)
        + "\n\nAre the dead-ish pictures the least trusted? Over both methods' pictures together: of the n "
        "dead-ish ones, how many are among the n least trusted by each score, and the mean score of each group.\n\n"
        "| score | dead-ish pictures (n) | among the n least trusted | their mean | the others' mean |\n"
        "| --- | ---: | ---: | ---: | ---: |\n" + "\n".join(checks)
    )
    return f"trust-{args.model}", text


def _maximum(layers, lucid: dict) -> str:
    """Per layer: the beyond-nature ratio's median and least, how many filters reach x1, the filters no
    photo turns on, and the first layer's closed-form maximum."""
    lines = ["| layer | median | least | at ×1 or more | no photo turns it on (picture, strongest photo) "
             "| share of the closed-form maximum: picture | strongest photo |", "| --- |" + " ---: |" * 6]
    for layer in layers:
        rows = lucid[layer.name]
        ratios = [r["beyond_nature"] for r in rows if r.get("beyond_nature") is not None]
        off = [r for r in rows if r.get("no_photo_on")]
        off_text = "; ".join(f"{layer.name}:{r['filter']} ({_f(r.get('picture_value'))}, {_f(r.get('strongest_photo'))})"
                             for r in off) or "0"
        forms = [r for r in rows if r.get("closed_form")]
        picture = [r["picture_value"] / r["closed_form"] for r in forms if r.get("picture_value") is not None]
        photo = [r["strongest_photo"] / r["closed_form"] for r in forms if r.get("strongest_photo") is not None]
        lines.append(f"| {layer.name} | {_f(float(np.median(ratios)) if ratios else None, 'times')} "
                     f"| {_f(min(ratios) if ratios else None, 'times')} | {sum(x >= 1.0 for x in ratios)} of {len(ratios)} "
                     f"| {off_text} | {_f(float(np.median(picture)) if picture else None)} "
                     f"| {_f(float(np.median(photo)) if photo else None)} |")
    return "\n".join(lines)


def _row(naive: list[dict], lucid: list[dict]) -> list[str]:
    return [
        _f(_mean(naive, "two_image")), _f(_mean(lucid, "two_image")), _f(_mean(lucid, "natural_two_image")),
        _f(_mean(naive, "path")), _f(_mean(lucid, "path")), _f(_mean(lucid, "natural_path")),
        _f(_mean(lucid, "path_random")),
        _f(_median(naive, "beyond_nature"), "times"), _f(_median(lucid, "beyond_nature"), "times"),
        _f(_mean(lucid, "seed")), _f(_mean(lucid, "seed_random")),
        str(sum(r["deadish"] for r in naive)), str(sum(r["deadish"] for r in lucid)),
        _f(_mean(lucid, "accentuation_two_image")), _f(_mean(lucid, "accentuation_path")),
        _f(_median(lucid, "accentuation_beyond_nature"), "times"),
        _f(_mean(lucid, "field_two_image")), _f(_mean(lucid, "field_path")),
        _f(_median(lucid, "field_beyond_nature"), "times"),
    ]
