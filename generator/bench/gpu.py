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
from dataclasses import dataclass, field
from typing import Callable

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


@dataclass
class Check:
    """What every part of the check shares: the model, the shipped config, the layers, the clock."""

    loaded: object
    base: object  # RenderConfig at the shipped settings
    facts: object
    peak: float | None
    reduced: bool
    clock: Clock
    all_layers: tuple
    layers: tuple  # the layers of the throughput table
    lever_layers: list
    notes: list = field(default_factory=list)

    def batch_of(self, layer, pictures: int = 1) -> int:
        from generator.render.renderer import auto_batch

        size = self.base.size
        return min(layer.filters, auto_batch(layer, self.loaded.layers, size, layer.filters, self.facts, pictures))


def run(args, network) -> tuple[str, str]:
    from generator.bench import default_weights, load
    from generator.network import backend

    backend.select(args.backend or "jax")
    from generator.network.layers import model_layers
    from generator.render.config import RenderConfig

    reduced = args.reduced
    clock = Clock(900.0 if reduced else BUDGET_S)  # reduced: a smoke test of every part, on a slow CPU too
    size = 32 if reduced else (args.size or 128)
    steps = 4 if reduced else (args.steps or STEPS)
    weights = default_weights(args, network)
    facts = backend.device_facts()
    loaded = load(network, weights)
    all_layers = model_layers(network.spec)
    layers = (all_layers[1], all_layers[6]) if reduced else all_layers
    lever_layers = [x for x in all_layers if x.name in step_bench.LEVER_LAYERS] or list(layers[:1])
    base = RenderConfig(model=network.name, weights=weights, weights_sha256=loaded.weights_sha256, size=size,
                        steps=steps, precision="mixed_bfloat16", backend=backend.name())
    check = Check(loaded, base, facts, _peak(facts.name), reduced, clock, all_layers, layers,
                  lever_layers[:1] if reduced else lever_layers)
    step_rows, shipped = _step_table(check)
    rows, per_layer = _throughput(check, shipped)
    parts = {
        "step_rows": step_rows, "rows": rows, "per_layer": per_layer,
        "all_views": _all_views(check, step_rows, shipped, per_layer),
        "cost_line": _determinism_cost(check, step_rows, per_layer),
        "quality_rows": _quality(check, network),
        "repro": _reproducibility(check),
        "examples": _examples_rate(check),
    }
    return "gpu", _report(check, network, parts)


def _step_table(check: Check) -> tuple[list[dict], dict]:
    """1. Where the time goes: the lever layers under every setting, deterministic ops as this process
    has them, then the other deterministic setting in a child process."""
    from generator.network import backend

    step_rows, shipped = [], {}
    for layer in check.lever_layers:
        for setting in step_bench.settings_to_run(step_bench.SETTINGS):
            if check.clock.left() < 60:
                check.notes.append(f"step table {layer.name} {setting}: not measured (time budget)")
                continue
            pictures = 4 if setting == "diversity view" else 1
            row = step_bench.measure(check.loaded, layer, check.base, check.batch_of(layer, pictures), setting,
                                     check.peak)
            if setting == "shipped":
                shipped[layer.name] = row  # the throughput table goes on with its compiled run
            step_rows.append({k: v for k, v in row.items() if k != "renderer"})
    if check.clock.left() > 90:
        base = check.base
        spec = {"model": base.model, "weights": base.weights, "size": base.size, "steps": base.steps,
                "precision": base.precision, "peak": check.peak,
                "settings": list(step_bench.CHILD_SETTINGS[:1] if check.reduced else step_bench.CHILD_SETTINGS),
                "layers": [(layer.name, check.batch_of(layer)) for layer in check.lever_layers]}
        try:
            step_rows += step_bench.run_child(spec, not backend.deterministic(), check.clock.left() - 60)
        except Exception as exc:  # noqa: BLE001 - a missing half of a table is a note, not the end of the check
            check.notes.append(f"step table with deterministic ops {'off' if backend.deterministic() else 'on'}: {exc}")
    else:
        check.notes.append("step table with the other deterministic setting: not measured (time budget)")
    return step_rows, shipped


def _throughput(check: Check, shipped: dict) -> tuple[list[str], dict[str, float]]:
    """2. Every layer at the shipped settings: a step's time and a batch's fixed cost, projected to 256 steps."""
    size, steps = check.base.size, check.base.steps
    rows, per_layer = [], {}
    for layer in check.layers:
        if check.clock.left() < 45:
            check.notes.append(f"{layer.name}: not measured (time budget)")
            continue
        batch = check.batch_of(layer)
        row = shipped.get(layer.name) or step_bench.measure(check.loaded, layer, check.base, batch, "shipped", check.peak)
        shipped[layer.name] = row
        row["renderer"].judge(np.zeros((batch, size, size, 3), np.uint8))  # its compile is not a batch's cost
        t0 = time.perf_counter()
        row["renderer"].render_batch(list(range(batch)), batch)  # the same compiled run, plus judging and copies
        whole = time.perf_counter() - t0
        step = row["step_ms"] / 1e3
        fixed = max(0.0, whole - step * steps)
        batches = math.ceil(layer.filters / batch)
        per_layer[layer.name] = row["compile_s"] + batches * (fixed + 256 * step)  # a real run compiles too
        share = "n/a" if check.peak is None else f"{100 * row['peak_share']:.1f}%"
        rows.append(f"| {layer.name} | {batch} | {row['compile_s']:.1f} | {row['step_ms']:.3g} | {fixed:.2f} | "
                    f"{layer.filters / per_layer[layer.name]:.3g} | {row['tflops']:.3g} | {share} |")
    return rows, per_layer


def _nearest(check: Check, names) -> Callable:
    index = {x.name: x.index for x in check.all_layers}
    return lambda layer: min(names, key=lambda name: abs(index[name] - layer.index))


def _all_views(check: Check, step_rows: list[dict], shipped: dict, per_layer: dict) -> float | None:
    """Every view: channel, neuron and negative cost a channel picture each; diversity as measured at the
    lever layer nearest in depth (4 pictures a filter, and the diversity term)."""
    ratio = {}  # a diversity filter's step time over a channel filter's, at the lever layers
    for r in step_rows:
        if r["setting"] == "diversity view":
            own = shipped.get(r["layer"])
            if own:
                ratio[r["layer"]] = (r["step_ms"] / r["rows"]) / (own["step_ms"] / own["rows"])
    measured = [x for x in check.all_layers if x.name in per_layer]
    if not (ratio and measured):
        return None
    nearest = _nearest(check, ratio)
    return sum(per_layer[x.name] * (3 + ratio[nearest(x)]) for x in measured)


def _determinism_cost(check: Check, step_rows: list[dict], per_layer: dict) -> str:
    """What the deterministic ops cost: each layer at the step-time ratio of its nearest lever layer."""
    from generator.network import backend

    on = {r["layer"]: r["step_ms"] for r in step_rows if r["setting"] == "shipped" and r["deterministic"]}
    off = {r["layer"]: r["step_ms"] for r in step_rows if r["setting"] == "shipped" and not r["deterministic"]}
    both = sorted(set(on) & set(off))
    measured = [x for x in check.all_layers if x.name in per_layer]
    if not (both and measured):
        return "not measured"
    near = _nearest(check, both)
    here_on = backend.deterministic()
    det_on = sum(per_layer[x.name] * (1 if here_on else on[near(x)] / off[near(x)]) for x in measured)
    det_off = sum(per_layer[x.name] * (off[near(x)] / on[near(x)] if here_on else 1) for x in measured)
    cost = det_on / det_off - 1
    verdict = ("at most 10%: deterministic stays the default" if cost <= 0.10 else
               "over 10%: the fast path should be the default (backend.DETERMINISTIC_DEFAULT = False, "
               "ATLAS_DETERMINISTIC=1 the opt-in)")
    per = ", ".join(f"{name} {on[name] / off[name]:.2f}×" for name in both)
    return (f"step time on / off: {per}; the measured layers' atlas time {det_on:.0f} s on against "
            f"{det_off:.0f} s off, {100 * cost:+.0f}%: {verdict}")


def _quality(check: Check, network) -> list[str]:
    """3. Quality, bf16 against fp32, on 16 sampled filters of two layers (the full 256 steps)."""
    import dataclasses

    from generator.network.layers import find_layer
    from generator.network.selection import sample_filters
    from generator.render.quality import judge
    from generator.render.renderer import LayerRenderer

    rows = []
    q_layers = [find_layer(n, network.spec) for n in (("block2_conv2", "block5_conv1") if network.name == "vgg16" else ())]
    if check.reduced or not q_layers:
        q_layers = list(check.layers[:1])
    for layer in q_layers:
        filters = sample_filters(layer, 4 if check.reduced else 16)
        for q_precision in ("mixed_bfloat16", "float32"):
            if check.clock.left() < 40:
                check.notes.append(f"quality {layer.name} {q_precision}: not measured (time budget)")
                continue
            q_cfg = dataclasses.replace(check.base, steps=4 if check.reduced else 256, precision=q_precision)
            renderer = LayerRenderer(check.loaded, layer, q_cfg)
            step_bench.share_reference(renderer, q_cfg, len(filters))
            images = np.stack([r.image for r in renderer.render_batch(filters, len(filters))])
            q = judge(renderer, images, filters)
            rows.append(f"| {layer.name} | {q_precision} | {q.dead} | {q.specificity:.2f} | {q.coverage:.2f} | {q.blobs} |")
    return rows


def _reproducibility(check: Check) -> str:
    """4. The promise of this default (deterministic: the same bytes; else float rounding)."""
    from generator.network import backend
    from generator.render.renderer import LayerRenderer

    if check.clock.left() <= 20:
        return "not measured (time budget)"
    renderer = LayerRenderer(check.loaded, check.layers[0], check.base)
    step_bench.share_reference(renderer, check.base, 4)
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
    return (f"{promise}; same batch twice: {'byte-identical' if same == 0 else f'max pixel difference {same}'}; "
            f"a filter in another batch: {'byte-identical' if moved == 0 else f'max pixel difference {moved}'}; "
            f"the promise is {'kept' if kept else 'BROKEN'}")


def _examples_rate(check: Check) -> str:
    """5. The dataset-examples pass on the device (synthetic images; decoding is a CPU figure)."""
    from generator.evidence.tracker import Tracker, auto_examples_batch
    from generator.network import backend

    if check.clock.left() <= 20:
        return "not measured (time budget)"
    loaded, facts = check.loaded, check.facts
    ex_size = 64 if check.reduced else 224
    ex_layers = list(check.all_layers)
    batch = auto_examples_batch(ex_layers, loaded.layers, ex_size, facts)
    tracker = Tracker(loaded, ex_layers, 16, backend.resolve_precision("auto", facts), loaded.spec.preprocessing)
    state = tracker.initial_state()
    images = np.random.default_rng(0).integers(0, 256, (batch, ex_size, ex_size, 3), dtype=np.uint8)
    valid = np.ones(batch, bool)
    state = tracker.update(state, images, valid, 0)
    backend.to_numpy(state[0]["hist"])
    rounds = 2 if check.reduced else 20
    t0 = time.perf_counter()
    for i in range(rounds):
        state = tracker.update(state, images, valid, (i + 1) * batch)
    backend.to_numpy(state[-1]["hist"])
    rate = rounds * batch / (time.perf_counter() - t0)
    return (f"{rate:.0f} images/s at {ex_size} px through {len(ex_layers)} layers, batch {batch} "
            f"(device part only); 50,000 ImageNet images would take {50000 / rate:.0f} s of device time")


def _report(check: Check, network, parts: dict) -> str:
    from generator.bench import machine
    from generator.network import backend

    size, steps, peak, all_layers = check.base.size, check.base.steps, check.peak, check.all_layers
    reduced, per_layer, all_views = check.reduced, parts["per_layer"], parts["all_views"]
    complete = len([x for x in all_layers if x.name in per_layer]) == len(all_layers) and not reduced
    command = 'make bench-gpu BENCH_GPU_ARGS="--reduced"' if reduced else "make bench-gpu"
    peak_text = f"{peak:.0f} TFLOP/s (dense bf16 measured on this card type here)" if peak else "unknown for this device"
    total = sum(x.filters for x in all_layers)
    projection = (
        f"Projected full channel atlas ({total:,} filters, {size} px, 256 steps, bf16): **{sum(per_layer.values()):.0f} s**; "
        f"every view (channel, neuron, negative, 4 diversity pictures; no dataset examples): "
        f"**{all_views / 60:.1f} min**.\n\n" if complete and all_views else
        "Projected full atlas: not projected (not every layer was measured).\n\n")
    text = (
        f"### GPU check{' (reduced, a CPU smoke run)' if reduced else ''}: {network.name}, {size} px\n\n"
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
        f"{step_bench.TABLE_HEAD}\n" + "\n".join(step_bench.row_text(r) for r in parts["step_rows"]) + "\n\n"
        f"What the deterministic ops cost: {parts['cost_line']}.\n\n"
        f"#### Throughput per layer\n\n"
        f"Each layer at the shipped settings and its auto batch: a step's time from a {steps}-step run, and "
        "a batch's fixed cost (judging the pictures, copies) from `render_batch` on the same program, projected "
        "to 256 steps, the compile counted once a layer.\n\n"
        "| layer | auto batch | compile s | ms / step | fixed s a batch | filters/s at 256 steps | TFLOP/s | of bf16 peak |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(parts["rows"]) + "\n\n"
        + projection
        + "Quality, bf16 against fp32 (dead / specificity / median coverage / blobs):\n\n"
        "| layer | precision | dead | specificity | coverage | blobs |\n| --- | --- | ---: | ---: | ---: | ---: |\n"
        + "\n".join(parts["quality_rows"]) + "\n\n"
        f"Reruns: {parts['repro']}.\n\n"
        f"Dataset examples: {parts['examples']}.\n\n"
        + ("Notes: " + "; ".join(check.notes) + "." if check.notes else "Every part ran within the time budget.")
    )
    return text
