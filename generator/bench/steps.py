"""Where a render step's time goes: the compiled run of one batch, timed step by step, under each lever.

A *setting* is the shipped configuration with one lever moved: the cut network's options
(``generator.network.compute``: Keras' max-pool instead of the reshape, the input padded to 8 channels), the
precision, or XLA's deterministic GPU ops (a process-wide flag read when JAX starts, so those settings
run in a child process: ``python -m generator.bench.steps SPEC``). Each is timed on the bare compiled
run (``LayerRenderer.compiled_run``, the program ``render_batch`` runs), called twice: the first call
compiles, the second is timed and divided by its steps. FLOP per step: the truncated forward pass and
its input gradient, 2 x the layer table's forward FLOP per picture.

The program JAX hands to XLA is read too (``jit(...).lower(...)``): its convolutions (the forward pass
and the input gradient are one each per convolution of the cut network; anything beyond would be the
weight gradients, which nothing needs), the convolutions computing in float32 in a bfloat16 run, and
its transposes and scatters.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time

from generator.network.compute import NetOptions
from generator.render.views import VIEWS

LEVER_LAYERS = ("block1_conv2", "block3_conv3", "block5_conv3")
# name: (net options, precision or None for the shipped one, view)
SETTINGS = {
    "shipped": (NetOptions(), None, "channel"),
    "pool keras": (NetOptions(pool="keras"), None, "channel"),
    "pool reshape": (NetOptions(pool="reshape"), None, "channel"),
    "input 8 channels": (NetOptions(input_channels=8), None, "channel"),
    "float32": (NetOptions(), "float32", "channel"),
    "diversity view": (NetOptions(), None, "diversity"),
}
CHILD_SETTINGS = ("shipped", "pool keras", "pool reshape")  # run again with XLA's deterministic ops off


def settings_to_run(names) -> list[str]:
    """``names`` less the pool setting that is what ``shipped`` resolves to here (the same program)."""
    shipped = NetOptions().resolved().pool
    return [name for name in names if name != f"pool {shipped}"]


_REFERENCES: dict = {}  # (layer, configuration in float32) -> its contrast reference, made once a process


def share_reference(renderer, config, batch: int) -> None:
    """Give ``renderer`` the contrast reference of its layer and configuration, made once per process.
    The reference is rendered in float32 whatever the precision, and the network options are the same
    computation, so every setting of a layer shares it: the check times the steps, not the reference's
    pictures again for each setting (64 pictures a time)."""
    from generator.render.views import CHANNEL

    if not renderer.needs_reference(CHANNEL):
        return
    key = (renderer.layer.name, dataclasses.replace(config, precision="float32"))
    if key not in _REFERENCES:
        _REFERENCES[key] = renderer.reference(batch)
    renderer.share_reference(_REFERENCES[key])


def measure(loaded, layer, config, batch: int, setting: str, peak: float | None) -> dict:
    """One row of the step table: ``layer`` under ``setting`` at ``batch`` rows, ``config.steps`` steps."""
    from generator.network import backend
    from generator.render.renderer import LayerRenderer

    options, precision, view_name = SETTINGS[setting]
    view = VIEWS[view_name]
    cfg = dataclasses.replace(config, precision=precision or config.precision)
    renderer = LayerRenderer(dataclasses.replace(loaded, options=options), layer, cfg)
    filters = list(range(min(batch, layer.filters)))
    rows = batch * view.images
    share_reference(renderer, cfg, batch)
    run, args = renderer.compiled_run(filters, batch, view)
    t0 = time.perf_counter()
    backend.to_numpy(run(*args)[1])
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    backend.to_numpy(run(*args)[1])
    seconds = time.perf_counter() - t0
    step = seconds / cfg.steps
    tflops = 2 * layer.forward_flop(cfg.size) * rows / step / 1e12
    return {
        "layer": layer.name, "setting": setting, "deterministic": backend.deterministic(), "batch": batch,
        "rows": rows, "compile_s": round(first - seconds, 2), "step_ms": step * 1e3, "tflops": tflops,
        "peak_share": tflops / peak if peak else None, "seconds": seconds, "precision": cfg.precision,
        "program": program_facts(run, args, renderer.net(cfg.precision)),
        "renderer": renderer,
    }


def program_facts(run, args, net) -> dict | None:
    """What the program handed to XLA holds (JAX only): convolutions against the cut network's own
    count, float32 convolutions, transposes, scatters."""
    from generator.network import backend

    if backend.name() != "jax":
        return None
    text = run.lower(*args).as_text()
    convs = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    own = sum(type(layer).__name__ in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D") for layer in net.model.layers)
    return {
        "convolutions": len(convs),
        "network_convolutions": own,
        "float32_convolutions": sum(bool(re.search(r"->\s*tensor<[^>]*xf32>", line)) for line in convs),
        "transposes": text.count("stablehlo.transpose"),
        "scatters": text.count("stablehlo.scatter") + text.count("select_and_scatter"),
    }


def row_text(row: dict) -> str:
    program = row.get("program")
    if program:
        extra = program["convolutions"] - 2 * program["network_convolutions"]
        convs = (f"{program['convolutions']} ({program['network_convolutions']} forward + "
                 f"{program['network_convolutions']} input gradient{f', {extra} more' if extra else ''}"
                 f"{', ' + str(program['float32_convolutions']) + ' in float32' if program['float32_convolutions'] and row['precision'] != 'float32' else ''})")
        shape = f"{convs} | {program['transposes']} | {program['scatters']}"
    else:
        shape = "n/a | n/a | n/a"
    share = f"{100 * row['peak_share']:.1f}%" if row.get("peak_share") is not None else "n/a"
    return (f"| {row['layer']} | {row['setting']} | {'on' if row['deterministic'] else 'off'} | {row['rows']} | "
            f"{row['compile_s']:.1f} | {row['step_ms']:.3g} | {row['tflops']:.3g} | {share} | {shape} |")


TABLE_HEAD = ("| layer | setting | deterministic ops | rows | compile s | ms / step | TFLOP/s | of bf16 peak | "
              "convolutions in the program | transposes | scatters |\n"
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")


# --- the child process: the same rows with XLA's deterministic ops off ----------------------------------


def child_env(deterministic: bool) -> dict:
    """The environment of a child that runs with (or without) XLA's deterministic GPU ops."""
    env = dict(os.environ)
    flags = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "deterministic_ops" not in f)
    env["XLA_FLAGS"] = flags
    env["ATLAS_DETERMINISTIC"] = "1" if deterministic else "0"
    env["KERAS_BACKEND"] = "jax"
    return env


def run_child(spec: dict, deterministic: bool, timeout: float) -> list[dict]:
    """Rows measured by a child process (``spec``: model, weights, size, steps, layers with their
    batches, settings, peak); one line naming what went wrong otherwise."""
    proc = subprocess.run([sys.executable, "-m", "generator.bench.steps", json.dumps(spec)], capture_output=True,
                          text=True, env=child_env(deterministic), timeout=max(10.0, timeout))
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the child with deterministic ops {'on' if deterministic else 'off'} failed: {tail[:200]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    from generator.network import backend

    spec = json.loads(argv[0])
    backend.select("jax")
    from generator.network.layers import find_layer
    from generator.network.models import load_model
    from generator.render.config import RenderConfig

    loaded = load_model(spec["model"], spec["weights"])
    config = RenderConfig(model=spec["model"], weights=spec["weights"], weights_sha256=loaded.weights_sha256,
                          size=spec["size"], steps=spec["steps"], precision=spec["precision"], backend="jax")
    rows = []
    for name, batch in spec["layers"]:
        for setting in settings_to_run(spec["settings"]):
            row = measure(loaded, find_layer(name, spec["model"]), config, batch, setting, spec["peak"])
            row.pop("renderer")
            rows.append(row)
    print(json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
