"""``atlas bench gpu`` (``make bench-gpu``): the whole GPU check in one command, within 8 minutes.

Made for a bare GPU host (JAX, no TensorFlow, no network; Keras carried as wheels, BENCHMARKS.md says
how). In order of what matters most, each part checking the clock and reporting what it had no time
for instead of running past the budget:

1. Where the time goes: per-step milliseconds and share of the card's bf16 peak for block1_conv2,
   block3_conv3 and block5_conv3, shipped and with each lever moved (``generator.bench.steps``),
   XLA's deterministic ops on and off (a child process), and what the compiled program holds.
2. Throughput of every layer at the shipped settings: a step's time and a batch's fixed cost (judging,
   copies), projected to the full channel atlas and to every view (``make atlas``'s work without
   dataset examples), and what the deterministic ops cost the atlas.
3. Quality of bf16 against float32 on sampled filters; 4. whether reruns keep the promise the README
   makes; 5. the dataset-examples pass rate.

``--reduced`` is the same check sized for a CPU in minutes (the CI smoke test).
"""

from __future__ import annotations

import math
import time

import numpy as np

from generator.bench import steps as step_bench

BUDGET_S = 420.0  # leaves a minute of the 8 for start-up and writing
BF16_PEAK_TFLOPS = {"H100": 790.0, "H200": 790.0}  # dense bf16 matrix products measured on these cards here
STEPS = 32  # steps of each timed run (the step table and the throughput table share their compiled runs)


class Clock:
    def __init__(self, budget: float) -> None:
        self.start, self.budget = time.monotonic(), budget

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)


def _peak(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def run(args) -> tuple[str, str]:
    import dataclasses

    from generator.bench import default_weights, machine
    from generator.network import backend

    backend.select(args.backend or "jax")
    from generator.network.layers import find_layer, model_layers
    from generator.network.models import load_model
    from generator.network.selection import sample_filters
    from generator.render.config import RenderConfig
    from generator.render.quality import judge
    from generator.render.renderer import LayerRenderer, auto_batch

    reduced = args.reduced
    clock = Clock(900.0 if reduced else BUDGET_S)  # reduced: a smoke test of every part, on a slow CPU too
    size = 32 if reduced else (args.size or 128)
    steps = 4 if reduced else (args.steps or STEPS)
    weights = default_weights(args)
    facts = backend.device_facts()
    peak = _peak(facts.name)
    loaded = load_model(args.model, weights)
    all_layers = model_layers(args.model)
    layers = (all_layers[1], all_layers[6]) if reduced else all_layers
    lever_layers = [x for x in all_layers if x.name in step_bench.LEVER_LAYERS] or list(layers[:1])
    if reduced:
        lever_layers = lever_layers[:1]
    precision = "mixed_bfloat16"
    base = RenderConfig(model=args.model, weights=weights, weights_sha256=loaded.weights_sha256, size=size,
                        steps=steps, precision=precision, backend=backend.name())
    notes: list[str] = []

    def batch_of(layer, pictures: int = 1) -> int:
        return min(layer.filters, auto_batch(layer, loaded.layers, size, layer.filters, facts, pictures))

    # 1. where the time goes: the lever layers under every setting, deterministic ops as this process has them
    step_rows, shipped = [], {}
    for layer in lever_layers:
        for setting in step_bench.settings_to_run(step_bench.SETTINGS):
            if clock.left() < 60:
                notes.append(f"step table {layer.name} {setting}: not measured (time budget)")
                continue
            pictures = 4 if setting == "diversity view" else 1
            row = step_bench.measure(loaded, layer, base, batch_of(layer, pictures), setting, peak)
            if setting == "shipped":
                shipped[layer.name] = row  # the throughput table goes on with its compiled run
            step_rows.append({k: v for k, v in row.items() if k != "renderer"})
    if clock.left() > 90:
        spec = {"model": args.model, "weights": weights, "size": size, "steps": steps, "precision": precision,
                "peak": peak, "settings": list(step_bench.CHILD_SETTINGS[:1] if reduced else step_bench.CHILD_SETTINGS),
                "layers": [(layer.name, batch_of(layer)) for layer in lever_layers]}
        try:
            step_rows += step_bench.run_child(spec, not backend.deterministic(), clock.left() - 60)
        except Exception as exc:  # noqa: BLE001 - a missing half of a table is a note, not the end of the check
            notes.append(f"step table with deterministic ops {'off' if backend.deterministic() else 'on'}: {exc}")
    else:
        notes.append("step table with the other deterministic setting: not measured (time budget)")

    # 2. throughput of every layer at the shipped settings
    rows, per_layer = [], {}
    for layer in layers:
        if clock.left() < 45:
            notes.append(f"{layer.name}: not measured (time budget)")
            continue
        batch = batch_of(layer)
        row = shipped.get(layer.name) or step_bench.measure(loaded, layer, base, batch, "shipped", peak)
        shipped[layer.name] = row
        row["renderer"].judge(np.zeros((batch, size, size, 3), np.uint8))  # its compile is not a batch's cost
        t0 = time.perf_counter()
        row["renderer"].render_batch(list(range(batch)), batch)  # the same compiled run, plus judging and copies
        whole = time.perf_counter() - t0
        step = row["step_ms"] / 1e3
        fixed = max(0.0, whole - step * steps)
        batches = math.ceil(layer.filters / batch)
        per_layer[layer.name] = row["compile_s"] + batches * (fixed + 256 * step)  # a real run compiles too
        share = "n/a" if peak is None else f"{100 * row['peak_share']:.1f}%"
        rows.append(f"| {layer.name} | {batch} | {row['compile_s']:.1f} | {row['step_ms']:.3g} | {fixed:.2f} | "
                    f"{layer.filters / per_layer[layer.name]:.3g} | {row['tflops']:.3g} | {share} |")
    measured = [x for x in all_layers if x.name in per_layer]
    channel_atlas = sum(per_layer.values())
    # every view: channel, neuron and negative cost a channel picture each; diversity as measured at the
    # lever layer nearest in depth (4 pictures a filter, and the diversity term)
    ratio = {}  # a diversity filter's step time over a channel filter's, at the lever layers
    for r in step_rows:
        if r["setting"] == "diversity view":
            own = shipped.get(r["layer"])
            if own:
                ratio[r["layer"]] = (r["step_ms"] / r["rows"]) / (own["step_ms"] / own["rows"])
    all_views = None
    if ratio and measured:
        index = {x.name: x.index for x in all_layers}
        nearest = lambda layer: min(ratio, key=lambda name: abs(index[name] - layer.index))  # noqa: E731
        all_views = sum(per_layer[x.name] * (3 + ratio[nearest(x)]) for x in measured)
    complete = len(measured) == len(all_layers) and not reduced

    # what the deterministic ops cost: each layer at the step-time ratio of its nearest lever layer
    cost_line = "not measured"
    on = {r["layer"]: r["step_ms"] for r in step_rows if r["setting"] == "shipped" and r["deterministic"]}
    off = {r["layer"]: r["step_ms"] for r in step_rows if r["setting"] == "shipped" and not r["deterministic"]}
    both = sorted(set(on) & set(off))
    if both and measured:
        index = {x.name: x.index for x in all_layers}
        near = lambda layer: min(both, key=lambda name: abs(index[name] - layer.index))  # noqa: E731
        here_on = backend.deterministic()
        det_on = sum(per_layer[x.name] * (1 if here_on else on[near(x)] / off[near(x)]) for x in measured)
        det_off = sum(per_layer[x.name] * (off[near(x)] / on[near(x)] if here_on else 1) for x in measured)
        cost = det_on / det_off - 1
        verdict = ("at most 10%: deterministic stays the default" if cost <= 0.10 else
                   "over 10%: the fast path should be the default (backend.DETERMINISTIC_DEFAULT = False, "
                   "ATLAS_DETERMINISTIC=1 the opt-in)")
        per = ", ".join(f"{name} {on[name] / off[name]:.2f}×" for name in both)
        cost_line = (f"step time on / off: {per}; the measured layers' atlas time {det_on:.0f} s on against "
                     f"{det_off:.0f} s off, {100 * cost:+.0f}%: {verdict}")

    # 3. quality, bf16 against fp32, on 16 sampled filters of two layers (the full 256 steps)
    quality_rows = []
    q_layers = [find_layer(n, args.model) for n in (("block2_conv2", "block5_conv1") if args.model == "vgg16" else ())]
    if reduced or not q_layers:
        q_layers = list(layers[:1])
    for layer in q_layers:
        filters = sample_filters(layer, 4 if reduced else 16)
        for q_precision in ("mixed_bfloat16", "float32"):
            if clock.left() < 40:
                notes.append(f"quality {layer.name} {q_precision}: not measured (time budget)")
                continue
            q_cfg = dataclasses.replace(base, steps=4 if reduced else 256, precision=q_precision)
            renderer = LayerRenderer(loaded, layer, q_cfg)
            images = np.stack([r.image for r in renderer.render_batch(filters, len(filters))])
            q = judge(renderer, images, filters)
            quality_rows.append(f"| {layer.name} | {q_precision} | {q.dead} | {q.specificity:.2f} | {q.coverage:.2f} | {q.blobs} |")

    # 4. reproducibility: the promise of this default (deterministic: the same bytes; else float rounding)
    repro = "not measured (time budget)"
    if clock.left() > 20:
        layer = layers[0]
        renderer = LayerRenderer(loaded, layer, base)
        a = renderer.render_batch([0, 1, 2, 3], 4)
        b = renderer.render_batch([0, 1, 2, 3], 4)
        c = renderer.render_batch([3, 7, 8, 9], 4)
        diff = lambda x, y: int(np.abs(x.image.astype(int) - y.image.astype(int)).max())  # noqa: E731
        same, moved = max(diff(x, y) for x, y in zip(a, b)), diff(a[3], c[0])
        if backend.deterministic():
            kept = same == 0
            promise = "deterministic ops on: a rerun gives the same bytes"
        else:
            kept = same <= 2
            promise = "deterministic ops off: a rerun agrees to float rounding (at most 2 of 255)"
        repro = (f"{promise}; same batch twice: {'byte-identical' if same == 0 else f'max pixel difference {same}'}; "
                 f"a filter in another batch: {'byte-identical' if moved == 0 else f'max pixel difference {moved}'}; "
                 f"the promise is {'kept' if kept else 'BROKEN'}")

    # 5. the dataset-examples pass on the device (synthetic images; decoding is a CPU figure)
    examples = "not measured (time budget)"
    if clock.left() > 20:
        from generator.evidence.tracker import Tracker, auto_examples_batch

        ex_size = 64 if reduced else 224
        ex_layers = list(all_layers)
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
    total = sum(x.filters for x in all_layers)
    projection = (
        f"Projected full channel atlas ({total:,} filters, {size} px, 256 steps, bf16): **{channel_atlas:.0f} s**; "
        f"every view (channel, neuron, negative, 4 diversity pictures; no dataset examples): "
        f"**{all_views / 60:.1f} min**.\n\n" if complete and all_views else
        "Projected full atlas: not projected (not every layer was measured).\n\n")
    text = (
        f"### GPU check{' (reduced, a CPU smoke run)' if reduced else ''}: {args.model}, {size} px\n\n"
        f"Machine: {machine()}. Backend {backend.name()}, deterministic ops "
        f"{'on' if backend.deterministic() else 'off'} by default. Command: `{command}`. Peak for the "
        f"percentages: {peak_text}.\n\n"
        f"#### Where the time goes\n\n"
        f"Each row: one batch's compiled run of {steps} steps, timed after the call that compiles it; a step's "
        "FLOP are the truncated forward pass and its input gradient (2 × forward). Settings move one lever "
        "from the shipped one: the other max-pool (`pool keras`: Keras' own; `pool reshape`: a reshape and a "
        "first-maximum mask, shipped on a GPU with deterministic ops), the input padded to 8 channels, float32 "
        "instead of bf16, and the diversity view (4 pictures a filter, for the all-views projection). The "
        "program's columns count what JAX hands to XLA.\n\n"
        f"{step_bench.TABLE_HEAD}\n" + "\n".join(step_bench.row_text(r) for r in step_rows) + "\n\n"
        f"What the deterministic ops cost: {cost_line}.\n\n"
        f"#### Throughput per layer\n\n"
        f"Each layer at the shipped settings and its auto batch: a step's time from a {steps}-step run, and "
        "a batch's fixed cost (judging the pictures, copies) from `render_batch` on the same program, projected "
        "to 256 steps, the compile counted once a layer.\n\n"
        "| layer | auto batch | compile s | ms / step | fixed s a batch | filters/s at 256 steps | TFLOP/s | of bf16 peak |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(rows) + "\n\n"
        + projection
        + "Quality, bf16 against fp32 (dead / specificity / median coverage / blobs):\n\n"
        "| layer | precision | dead | specificity | coverage | blobs |\n| --- | --- | ---: | ---: | ---: | ---: |\n"
        + "\n".join(quality_rows) + "\n\n"
        f"Reruns: {repro}.\n\n"
        f"Dataset examples: {examples}.\n\n"
        + ("Notes: " + "; ".join(notes) + "." if notes else "Every part ran within the time budget.")
    )
    return "gpu", text
