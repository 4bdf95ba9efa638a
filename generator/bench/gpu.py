"""``atlas bench gpu`` (``make bench-gpu``): the whole GPU check in one command, within 8 minutes.

Made for a bare GPU host (JAX, no TensorFlow, no network; Keras carried as wheels, BENCHMARKS.md says
how): per layer throughput in bf16 and fp32 with batches sized by free memory, the projected full
atlas, the quality of bf16 against fp32 on sampled filters, whether reruns reproduce, and the dataset
examples pass rate. Every part checks the clock and reports what it had no time for instead of running
past the budget. ``--reduced`` is the same check sized for a CPU in minutes (the CI smoke test).
"""

from __future__ import annotations

import time

import numpy as np

BUDGET_S = 420.0  # leaves a minute of the 8 for start-up and writing
BF16_PEAK_TFLOPS = {"H100": 790.0, "H200": 790.0}  # dense bf16 matrix products measured on these cards here


class Clock:
    def __init__(self, budget: float) -> None:
        self.start, self.budget = time.monotonic(), budget

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)


def _peak(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def run(args) -> tuple[str, str]:
    from generator import backend
    from generator.bench import default_weights, machine

    backend.select(args.backend or "jax")
    from generator.config import RenderConfig
    from generator.layers import find_layer, model_layers
    from generator.models import load_model
    from generator.quality import judge
    from generator.render import LayerRenderer, auto_batch
    from generator.selection import sample_filters

    reduced = args.reduced
    clock = Clock(300.0 if reduced else BUDGET_S)
    size, steps = (32, 4) if reduced else (args.size or 128, args.steps or 32)
    weights = default_weights(args)
    facts = backend.device_facts()
    peak = _peak(facts.name)
    loaded = load_model(args.model, weights)
    layers = model_layers(args.model)
    if reduced:
        layers = (layers[1], layers[4])
    notes: list[str] = []

    # 1. throughput per layer, bf16 (all layers) and fp32 (first, middle and last)
    rows, rates = [], {}
    fp32_layers = {layers[0].name, layers[len(layers) // 2].name, layers[-1].name}
    for precision in ("mixed_bfloat16", "float32"):
        cfg = RenderConfig(model=args.model, weights=weights, weights_sha256=loaded.weights_sha256, size=size,
                           steps=steps, precision=precision, backend=backend.name())
        for layer in layers:
            if precision == "float32" and layer.name not in fp32_layers:
                continue
            if clock.left() < 30:
                notes.append(f"{layer.name} {precision}: not measured (time budget)")
                continue
            batch = min(layer.filters, auto_batch(layer, loaded.layers, size, layer.filters, facts))
            renderer = LayerRenderer(loaded, layer, cfg)
            filters = list(range(batch))
            t0 = time.perf_counter()
            while True:
                try:
                    renderer.render_batch(filters[:batch], batch)  # compile (and find a batch that fits)
                    break
                except Exception as exc:  # noqa: BLE001
                    if not backend.is_out_of_memory(exc) or batch == 1:
                        raise
                    notes.append(f"{layer.name} {precision}: out of memory at batch {batch}, halved")
                    batch //= 2
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            renderer.render_batch(filters[:batch], batch)
            seconds = time.perf_counter() - t0
            per_filter = seconds / batch * 256 / steps  # seconds per filter at 256 steps
            tflops = 2 * layer.forward_flop(size) * batch * steps / seconds / 1e12
            rates[(layer.name, precision)] = per_filter
            share = f"{100 * tflops / peak:.1f}%" if peak else "n/a"
            rows.append(f"| {layer.name} | {precision} | {batch} | {compile_s:.1f} | {1 / per_filter:.3g} | "
                        f"{tflops:.3g} | {share} |")

    projected = sum(rates.get((layer.name, "mixed_bfloat16"), np.nan) * layer.filters for layer in model_layers(args.model)
                    if not reduced)
    # 2. quality, bf16 against fp32, on 16 sampled filters of two layers (the full 256 steps)
    quality_rows = []
    q_layers = [find_layer(n, args.model) for n in (("block2_conv2", "block5_conv1") if args.model == "vgg16" else ())]
    if reduced or not q_layers:
        q_layers = list(layers[:1])
    for layer in q_layers:
        filters = sample_filters(layer, 4 if reduced else 16)
        for precision in ("mixed_bfloat16", "float32"):
            if clock.left() < 40:
                notes.append(f"quality {layer.name} {precision}: not measured (time budget)")
                continue
            cfg = RenderConfig(model=args.model, weights=weights, weights_sha256=loaded.weights_sha256, size=size,
                               steps=steps if reduced else 256, precision=precision, backend=backend.name())
            renderer = LayerRenderer(loaded, layer, cfg)
            images = np.stack([r.image for r in renderer.render_batch(filters, len(filters))])
            q = judge(renderer, images, filters)
            quality_rows.append(f"| {layer.name} | {precision} | {q.dead} | {q.specificity:.2f} | {q.coverage:.2f} | {q.blobs} |")

    # 3. reproducibility: the same batch twice, and one filter in another batch
    repro = "not measured (time budget)"
    if clock.left() > 20:
        layer = layers[0]
        cfg = RenderConfig(model=args.model, weights=weights, weights_sha256=loaded.weights_sha256, size=size,
                           steps=steps, precision="mixed_bfloat16", backend=backend.name())
        renderer = LayerRenderer(loaded, layer, cfg)
        a = renderer.render_batch([0, 1, 2, 3], 4)
        b = renderer.render_batch([0, 1, 2, 3], 4)
        c = renderer.render_batch([3, 7, 8, 9], 4)
        same = all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
        moved = np.array_equal(a[3].image, c[0].image)
        repro = (f"same batch twice: {'byte-identical' if same else 'different'}; a filter in another batch: "
                 f"{'byte-identical' if moved else 'different (max pixel difference ' + str(int(np.abs(a[3].image.astype(int) - c[0].image.astype(int)).max())) + ')'}")

    # 4. the dataset-examples pass on the device (synthetic images; decoding is a CPU figure)
    examples = "not measured (time budget)"
    if clock.left() > 20:
        from generator.examples import Tracker, auto_examples_batch

        ex_size = 64 if reduced else 224
        ex_layers = list(layers)
        batch = auto_examples_batch(ex_layers, loaded.layers, ex_size, facts)
        tracker = Tracker(loaded, ex_layers, 16, backend.resolve_precision("auto", facts), loaded.spec.preprocessing)
        state = tracker.initial_state()
        images = np.random.default_rng(0).integers(0, 256, (batch, ex_size, ex_size, 3), dtype=np.uint8)
        valid = np.ones(batch, bool)
        state = tracker.update(state, images, valid, 0)
        backend.to_numpy(state[0]["hist"])
        rounds = 2 if reduced else 20
        t0 = time.perf_counter()
        for i in range(rounds):
            state = tracker.update(state, images, valid, (i + 1) * batch)
        backend.to_numpy(state[-1]["hist"])
        rate = rounds * batch / (time.perf_counter() - t0)
        examples = (f"{rate:.0f} images/s at {ex_size} px through {len(ex_layers)} layers, batch {batch} "
                    f"(device part only); 50,000 ImageNet images would take {50000 / rate:.0f} s of device time")

    command = 'make bench-gpu BENCH_GPU_ARGS="--reduced"' if reduced else "make bench-gpu"
    peak_text = f"{peak:.0f} TFLOP/s (dense bf16 measured on this card type here)" if peak else "unknown for this device"
    text = (
        f"### GPU check{' (reduced, a CPU smoke run)' if reduced else ''}: {args.model}, {size} px, "
        f"measured over {steps} steps\n\n"
        f"Machine: {machine()}. Backend {backend.name()}. Command: `{command}`. Peak for the percentages: {peak_text}.\n\n"
        "| layer | precision | auto batch | compile s | filters/s at 256 steps | TFLOP/s | of bf16 peak |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(rows) + "\n\n"
        + (f"Projected full atlas ({sum(x.filters for x in model_layers(args.model)):,} filters, {size} px, "
           f"256 steps, bf16): **{projected:.0f} s**.\n\n" if not reduced else
           "Projected full atlas: not projected in a reduced run.\n\n")
        + "Quality, bf16 against fp32 (dead / specificity / median coverage / blobs):\n\n"
        "| layer | precision | dead | specificity | coverage | blobs |\n| --- | --- | ---: | ---: | ---: | ---: |\n"
        + "\n".join(quality_rows) + "\n\n"
        f"Reruns: {repro}; reproducible on this device as stated.\n\n"
        f"Dataset examples: {examples}.\n\n"
        + ("Notes: " + "; ".join(notes) + "." if notes else "Every part ran within the time budget.")
    )
    return "gpu", text
