"""The commands of ``atlas``: each reads its arguments, opens the network once and hands it down to the
pass that computes (``generator.passes``), the site or the benchmarks, then says in one line what it did.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys

from generator.cli.prepare import (
    CPU_HOURS_LIMIT,
    Network,
    backend_of,
    check_out,
    check_weights,
    cpu_hours,
    image_size,
    labelled,
    model_file_checks,
    model_file_line,
    open_network,
    read_network,
    select_backend,
)
from generator.errors import AtlasError

EXIT_INTERRUPTED = 130
EXIT_FAILED = 3


def cmd_layers(args: argparse.Namespace) -> int:
    from generator.network.layers import model_layers

    notes: list[str] = []
    network = read_network(args, notes)
    if network.file is not None:
        print(model_file_line(network.spec))
    spec = network.spec
    size = args.size or spec.input_size or 128
    if args.weights:
        check_weights(args.weights, spec)
        select_backend(args)
        loaded = network.load()
        print(f"weights: {loaded.weights} sha256 {loaded.weights_sha256[:16]}")
    _print_layers(model_layers(spec), size, notes)
    return 0


def _print_layers(layers, size: int, notes: list[str]) -> None:
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


def generate_job(args: argparse.Namespace):
    """What ``atlas generate`` would render, checked: (network, work, views, config before the backend)."""
    from generator.atlas.store import weights_name
    from generator.network.selection import parse_filters, parse_layers
    from generator.render.config import DEFAULT_LR, RenderConfig
    from generator.render.views import parse_views

    network = open_network(args)
    spec = network.spec
    size = image_size(args, spec, 128)
    layers = parse_layers(args.layers, spec)
    work = [(layer, parse_filters(args.filters, layer, clip=len(layers) > 1)) for layer in layers]
    if not any(filters for _, filters in work):
        parse_filters(args.filters, layers[0])  # none of the layers has these filters: say so for the first
    work = [(layer, filters) for layer, filters in work if filters]
    views = parse_views(args.views)
    if args.method == "naive" and [v.name for v in views] != ["channel"]:
        raise AtlasError(f"--views {args.views}: the naive method renders the channel view only")
    config = RenderConfig(
        model=spec.name, weights=weights_name(str(network.weights)), method=args.method, size=size, steps=args.steps,
        lr=args.lr or DEFAULT_LR[args.method], seed=args.seed, preprocessing="" if spec.zoo else spec.preprocessing.key,
    )
    for layer, _ in work:
        config.check_layer(layer)
    check_weights(network.weights, spec)
    check_out(args.out)
    views, images = photo_views(args, network, views, [layer for layer, _ in work])
    return network, work, views, config, images


def photo_views(args: argparse.Namespace, network: Network, views: list, layers: list):
    """(``views``, the image set of the atlas's dataset examples): less the accentuation view where the
    atlas has no dataset examples of ``layers`` to start from (asked for by name, that is refused in one
    line), and no image set where no view needs one."""
    from generator.atlas.files import read_json
    from generator.atlas.store import AtlasStore
    from generator.evidence.imagesets import list_images
    from generator.passes.atlas_defaults import atlas_defaults
    from generator.passes.trust import check_images, read_atlas

    if not any(view.from_photo for view in views):
        return views, None
    named = "accentuation" in [part.strip() for part in args.views.split(",")]
    manifest = os.path.join(args.out, network.name, "manifest.json")
    examples = (read_json(manifest, "manifest").get("examples") or {}) if os.path.exists(manifest) else {}
    if not set(examples.get("layers", [])) & {layer.name for layer in layers}:
        if named:
            raise AtlasError(f"--views accentuation: {args.out}/{network.name} has no dataset examples of these layers to "
                             f"start from; run `atlas examples --images DIR --out {args.out}` first, then this command again")
        return [view for view in views if not view.from_photo], None
    folder = args.images or atlas_defaults(args.out, network.name, str(network.weights), None, (network.name,)).images
    images = list_images(folder)
    check_images(read_atlas(AtlasStore(args.out, network.name))[1], images, folder)
    return views, images


def cmd_generate(args: argparse.Namespace) -> int:
    network, work, views, config, images = generate_job(args)
    started = backend_of(args, network)
    config = dataclasses.replace(config, precision=started.precision, backend=started.backend)
    if started.facts.kind == "cpu" and args.device == "auto":
        _refuse_long_cpu_run(args, network, work, views, config)
    from generator.passes.generate import generate

    loaded = network.load(seed=args.seed)
    config = dataclasses.replace(config, weights_sha256=loaded.weights_sha256)
    summary = generate(loaded, config, work, args.out, views=views, batch=args.batch, force=args.force,
                       devices=list(started.devices), shard=args.shard, images=images)
    print(
        f"{summary.rendered} filter views rendered, {summary.skipped} already done, {summary.dead} dead, "
        f"{summary.retried} redone in float32, {summary.seconds:.1f} s; atlas in {args.out}/{network.name} "
        f"(config {config.hash}, {config.precision}, {started.backend})"
        + (f"; {summary.no_start} accentuation views left out: their strongest example could not be read" if summary.no_start else "")
    )
    finished = not (summary.interrupted or summary.failed)
    _say_shard(args, network, finished)
    if args.shard is None and finished:
        from generator.cluster import GenerateJob

        _supersede(args, network, GenerateJob(tuple((layer, tuple(f)) for layer, f in work), tuple(views), config, 1))
    if summary.failed:
        shown = ", ".join(summary.failed[:5]) + (" …" if len(summary.failed) > 5 else "")
        print(f"atlas generate: error: {len(summary.failed)} filter views went non-finite even in float32 and were "
              f"not written ({shown}); try another --seed or --lr", file=sys.stderr)
        return EXIT_FAILED
    if summary.interrupted:
        print("interrupted: finished batches are saved; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _refuse_long_cpu_run(args: argparse.Namespace, network: Network, work, views, config) -> None:
    from generator.render.views import views_of

    mine = work
    if args.shard is not None:
        from generator.cluster.split import split_generate
        from generator.network.layers import model_layers

        mine = split_generate(work, views, config, args.shard.count, model_layers(network.spec)).shares[args.shard.index]
    hours = cpu_hours(mine, views, config)
    if hours > CPU_HOURS_LIMIT:
        raise AtlasError(
            f"no GPU found: this run ({sum(len(f) * len(views_of(views, layer, config.size)) for layer, f in mine):,} filter views at "
            f"{config.size} px, {config.steps} steps) would take about {hours:.0f} hours on a CPU like "
            "this project's 2-core machines; add --device cpu to run it here anyway, or run on a GPU "
            "(make install sets one up on NVIDIA machines)"
        )


def examples_job(args: argparse.Namespace):
    """What ``atlas examples`` would read, checked: (network, layers, size, image set, labels)."""
    from generator.evidence.imagesets import list_images
    from generator.evidence.labels import check_labels_arg
    from generator.network.selection import parse_layers

    check_labels_arg(args.labels, args.classes)
    network = open_network(args, images=args.images)
    images = list_images(args.images)
    labels = None
    if args.labels:
        labels, network = labelled(args, network, images)  # a zoo network with labels: its classifier too
    spec = network.spec
    size = image_size(args, spec, 224, strict=True)
    layers = parse_layers(args.layers, spec)
    if size < 16:
        raise AtlasError(f"--size {size}: give an image side of at least 16 pixels")
    check_weights(network.weights, spec)
    check_out(args.out)
    return network, layers, size, images, labels


def cmd_examples(args: argparse.Namespace) -> int:
    from generator.passes.examples import run_examples
    from generator.passes.examples_config import ExamplesConfig

    network, layers, size, images, labels = examples_job(args)
    started = backend_of(args, network)
    loaded = network.load()
    config = ExamplesConfig(model=network.name, weights_sha256=loaded.weights_sha256, size=size, top=args.top,
                            images=images, name=args.images_name, license=args.images_license,
                            precision=started.precision, backend=started.backend, labels=labels)
    summary = run_examples(loaded, layers, config, args.out, batch=args.batch, force=args.force,
                           checkpoint=args.checkpoint, shard=args.shard, devices=list(started.devices))
    print(summary.line())
    _say_shard(args, network, finished=not summary.interrupted)
    if args.shard is None and not summary.interrupted:
        from generator.cluster import ExamplesJob

        _supersede(args, network, ExamplesJob(config, tuple(layers), 1))
    if summary.interrupted:
        print("interrupted: the pass is checkpointed; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _say_shard(args: argparse.Namespace, network: Network, finished: bool) -> None:
    if args.shard is not None and finished:
        print(f"shard {args.shard} recorded in {args.out}/{network.name}/.shards/; once every shard has run: "
              f"atlas merge --out {args.out}")


def _supersede(args: argparse.Namespace, network: Network, job) -> None:
    """A whole run that finished: the shard jobs whose work it did are forgotten."""
    from generator.cluster.forget import supersede

    for line in supersede(args.out, network.name, job):
        print(line)


def cmd_trust(args: argparse.Namespace) -> int:
    from generator.atlas.store import AtlasStore
    from generator.evidence.imagesets import list_images
    from generator.network.selection import parse_layers
    from generator.network.zoo import MODELS
    from generator.passes.atlas_defaults import atlas_defaults
    from generator.passes.trust import check_images, read_atlas

    # what is not given is the atlas's own: its model, its weights, the folder of its examples
    given = atlas_defaults(args.out, args.model, args.weights, args.images, tuple(MODELS))
    args = argparse.Namespace(**{**vars(args), "model": given.model, "weights": given.weights, "images": given.images})
    network = open_network(args, images=args.images or None)
    if not args.images:  # a model file's atlas is found by the network's name, known once it is read
        args.images = atlas_defaults(args.out, network.name, network.weights, None, (network.name,)).images
    check_weights(network.weights, network.spec)
    layers = parse_layers(args.layers, network.spec)
    model_args = " ".join(shlex.quote(a) for a in ["--model", args.model, *(["--name", args.name] if args.name else [])])
    _, examples = read_atlas(AtlasStore(args.out, network.name), model_args)  # refused here, before the backend loads
    images = list_images(args.images)
    check_images(examples, images, args.images)
    without = [layer.name for layer in layers if layer.name not in examples.get("layers", [])]
    if args.layers != "all" and without:
        raise AtlasError(f"--layers {args.layers}: no dataset examples of {', '.join(without)} in this atlas; run "
                         f"`atlas examples --layers {','.join(without)}` first")
    started = backend_of(args, network)  # one device: the pass is forward passes only
    from generator.passes.trust import TrustConfig, run_trust

    loaded = network.load()
    config = TrustConfig(model=network.name, weights_sha256=loaded.weights_sha256, images=images,
                         size=examples["images"]["size"], top=examples["top"], precision=started.precision,
                         backend=started.backend)
    summary = run_trust(loaded, layers, config, args.out, batch=args.batch, facts=started.facts)
    print(summary.line())
    if summary.interrupted:
        print("interrupted: finished layers are saved; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def cmd_wiring(args: argparse.Namespace) -> int:
    from generator.network.zoo import model_spec

    user = model_file_checks(args)
    if not user:
        check_weights(args.weights or "imagenet", model_spec(args.model))
    check_out(args.out)
    network = open_network(args, device=False)  # a model file: the backend selected to read it
    if network.file is None:
        select_backend(args)
    from generator.passes.wiring import write_wiring

    loaded = network.load()
    notes: list[str] = []
    count = write_wiring(loaded, args.out, force=args.force, notes=notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wiring of {count} layers written to {args.out}/{network.name}")
    return 0


def cmd_sample_images(args: argparse.Namespace) -> int:
    from generator.evidence.imagesets import write_sample_tiles

    count, sources = write_sample_tiles(args.folder, args.size)
    print(f"{count} tiles of {args.size} px from {sources} scikit-image photographs written to {args.folder}")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    from generator.site.build import build_site

    check_out(args.out)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    count = build_site(args.data, args.out, args.compare, args.assets_url, args.assets_dir, models)
    upload = args.assets_dir or os.path.join(os.path.dirname(args.out.rstrip("/")), "site-assets")
    where = f"; pictures to upload to {args.assets_url} in {upload}/" if args.assets_url else ""
    print(f"{count} pages written to {args.out}/{where}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from generator import bench

    if model_file_checks(args) and args.what not in ("layers", "quality", "examples"):
        raise AtlasError(f"atlas bench {args.what} runs on the atlas's own networks; a model file works with "
                         "bench layers, quality and examples")
    network = read_network(args)  # a zoo network without weights: each bench has its default
    if network.file is not None:
        network.weights = args.weights or network.spec.source["file"]
    return bench.main(args, network)


def cmd_merge(args: argparse.Namespace) -> int:
    from generator.passes.merge import merge

    if not os.path.isdir(args.out):
        raise AtlasError(f"--out {args.out}: no such folder; give the atlas folder the shards wrote into")
    lines = merge(args.out, forget=args.forget_shards)
    print("\n".join(lines) if lines else f"nothing to merge in {args.out}: no shards waiting")
    return 0
