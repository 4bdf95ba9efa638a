"""``atlas bench layers``: throughput of the channel view per layer, projected to the whole atlas."""

from __future__ import annotations

import time


def measure_layer(loaded, layer, config, batch: int, view=None) -> tuple[float, int]:
    """Seconds for one batch after a compiling warm-up, and the filters in it."""
    from generator.render.renderer import LayerRenderer
    from generator.render.views import CHANNEL

    renderer = LayerRenderer(loaded, layer, config)
    filters = list(range(min(batch, layer.filters)))
    renderer.render_batch(filters, batch, view or CHANNEL)  # compile
    start = time.perf_counter()
    renderer.render_batch(filters, batch, view or CHANNEL)
    return time.perf_counter() - start, len(filters)


def run(args, network) -> tuple[str, str]:
    from generator.bench import default_weights, load, machine
    from generator.network import backend

    backend.select(args.backend)
    from generator.network.selection import parse_layers
    from generator.render.config import RenderConfig
    from generator.render.renderer import auto_batch

    size, steps = args.size or 128, args.steps or 16
    weights = default_weights(args, network)
    loaded = load(network, weights)
    facts = backend.device_facts()
    precision = args.precision or backend.resolve_precision("auto", facts)
    cfg = RenderConfig(model=network.name, weights=weights, weights_sha256=loaded.weights_sha256, size=size,
                       steps=steps, precision=precision, backend=backend.name())
    rows, total_seconds, total_flop = [], 0.0, 0.0
    layers = parse_layers(args.layers, network.spec)
    for layer in layers:
        batch = args.batch or auto_batch(layer, loaded.layers, size, layer.filters, facts)
        seconds, count = measure_layer(loaded, layer, cfg, batch)
        per_filter_step = seconds / (count * steps)
        flop = 2 * layer.forward_flop(size) * count * steps
        at_default = per_filter_step * layer.filters * 256
        total_seconds += at_default
        total_flop += 2 * layer.forward_flop(size) * layer.filters * 256
        rows.append(f"| {layer.name} | {batch} | {1 / (per_filter_step * 256):.3f} "
                    f"| {flop / seconds / 1e12:.3f} | {at_default / 60:.1f} |")
    filters = sum(layer.filters for layer in layers)
    text = (
        f"### Throughput per layer of {network.name}: {size} px, measured over {steps} steps, projected to 256 steps\n\n"
        f"Machine: {machine()}. Backend {backend.name()}, {precision}. "
        f"Command: `atlas bench layers --model {network.name} --size {size} --steps {steps}"
        f"{' --batch ' + str(args.batch) if args.batch else ''}`.\n\n"
        "| layer | batch | filters/s at 256 steps | TFLOP/s | minutes for all its filters at 256 steps |\n"
        "| --- | ---: | ---: | ---: | ---: |\n" + "\n".join(rows)
        + f"\n\nProjected channel views of these layers ({filters:,} filters, {size} px, 256 steps): "
        f"**{total_seconds / 3600:.1f} h**, {total_flop / 1e15:.1f} PFLOP of convolutions (forward and the "
        "gradient with respect to the image, twice the forward)."
    )
    return f"layers-{network.name}", text
