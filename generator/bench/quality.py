"""``atlas bench quality``: dead filters, specificity, coverage and blobs per layer, for the original
method and ours (and the ablation variants), on the same sampled filters."""

from __future__ import annotations

import sys

import numpy as np

from generator.errors import AtlasError

VARIANTS = {
    "naive": dict(method="naive", lr=10.0),
    "lucid-port": dict(pre_share=1.0, wake=False, periodic=False, floor=0.0, contrast=0.0),  # Lucid's defaults, pre-ReLU channel mean
    "no-periodic": dict(periodic=False),  # ours without the periodic picture
    "no-floor": dict(floor=0.0),  # ours without the floor term
    "no-wake": dict(wake=False),  # ours without the wake-up
    "no-contrast": dict(contrast=0.0),  # ours without the first layers' contrast term
    "lucid": dict(),  # ours
}


def run(args, network) -> tuple[str, str]:
    from generator.bench import default_weights, load, machine
    from generator.network import backend

    backend.select(args.backend)
    from generator.network.selection import parse_layers, sample_filters
    from generator.render.config import RenderConfig
    from generator.render.quality import judge
    from generator.render.renderer import LayerRenderer

    size, steps = args.size or 128, args.steps or 256
    weights = default_weights(args, network)
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise AtlasError(f"--variants {','.join(unknown)}: choose from {', '.join(VARIANTS)}")
    loaded = load(network, weights)
    precision = args.precision or "float32"
    table = {}
    for layer in parse_layers(args.layers, network.spec):
        filters = sample_filters(layer, args.sample, args.offset)
        for name in variants:
            v_size, v_steps = (96, 50) if name == "naive" and args.naive_original else (size, steps)
            cfg = RenderConfig(model=network.name, weights=weights, weights_sha256=loaded.weights_sha256, size=v_size,
                               steps=v_steps, backend=backend.name(), precision=precision, **VARIANTS[name])
            renderer = LayerRenderer(loaded, layer, cfg)
            images = []
            for i in range(0, len(filters), 16):
                images += [r.image for r in renderer.render_batch(filters[i : i + 16], 16)]
            q = judge(renderer, np.stack(images), filters)
            table[(layer.name, name)] = q
            print(f"{layer.name} {name}: dead {q.dead}/{q.filters} specificity {q.specificity:.2f} "
                  f"coverage {q.coverage:.2f} blobs {q.blobs}", file=sys.stderr, flush=True)
    layers = list(dict.fromkeys(k[0] for k in table))
    head = "| layer | " + " | ".join(variants) + " |\n| --- |" + " ---: |" * len(variants)
    lines = [head]
    for name in layers:
        cells = [_cell(table[(name, v)]) for v in variants]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = []
    for v in variants:
        qs = [table[(n, v)] for n in layers]
        totals.append(f"**{sum(q.dead for q in qs)} / {np.mean([q.specificity for q in qs]):.2f} / "
                      f"{np.median([q.coverage for q in qs]):.2f} / {sum(q.blobs for q in qs)}**")
    lines.append("| all sampled | " + " | ".join(totals) + " |")
    naive_note = " (`naive` at the original 96 px, 50 steps)" if args.naive_original and "naive" in variants else ""
    offset_note = f", each moved {args.offset} along (a held-out sample)" if args.offset else ""
    offset_flag = f" --offset {args.offset}" if args.offset else ""
    command = (f"atlas bench quality --model {network.name} --weights {weights} --size {size} --steps {steps} "
               f"--sample {args.sample}{offset_flag} --variants {args.variants}{' --naive-original' if args.naive_original else ''}"
               f"{' --precision ' + precision if args.precision else ''}"
               f"{'' if args.layers == 'all' else ' --layers ' + args.layers}")
    text = (
        f"### Quality of {network.name}: {args.sample} filters per layer{offset_note}, {size} px, {steps} steps, {precision}{naive_note}\n\n"
        f"Machine: {machine()}. Backend {backend.name()}. Command: `{command}`.\n\n"
        "Each cell: dead filters / specificity / median coverage / blobs (coverage ≤ 0.25), judged on the saved "
        "8-bit images. Dead: post-ReLU map all zero. Specificity: share of pictures whose own filter responds "
        "most, relative to its mean response over the sampled pictures. Coverage: share of the cells of a 4×4 "
        "grid over the filter's map holding a unit at ≥ 10% of the map's maximum.\n\n"
        + "\n".join(lines)
    )
    return f"quality-{network.name}-{size}-{steps}-{precision}{f'-offset{args.offset}' if args.offset else ''}", text


def _cell(q) -> str:
    return f"{q.dead} / {q.specificity:.2f} / {q.coverage:.2f} / {q.blobs}"
