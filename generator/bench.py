"""``atlas bench``: speed, quality and site-build figures, written into BENCHMARKS.md.

Each figure is measured in the same run as its baseline (this machine is shared and noisy), and each
section of BENCHMARKS.md says the machine and the command that produced it. Nothing here is asserted:
benchmarks report, tests check.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from generator.errors import AtlasError

SPEED_LAYER = "block3_conv3"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    from generator import backend

    kind, cc = backend.accelerator()
    device = "no GPU" if kind == "cpu" else f"GPU (compute capability {cc})"
    return f"{os.cpu_count()} cores of {cpu}, {mem:.0f} GiB, {device}, {platform.system()} {platform.release()}"


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


# --- speed -------------------------------------------------------------------------------------


def original_script(loaded, layer_name: str, filters: list[int], size: int, steps: int) -> float:
    """The project's original script, one filter at a time; returns seconds for all ``filters``."""
    import tensorflow as tf
    import keras

    extractor = keras.Model(inputs=loaded.model.inputs, outputs=loaded.model.get_layer(layer_name).output)

    @tf.function
    def step(img, filter_index, learning_rate):
        with tf.GradientTape() as tape:
            tape.watch(img)
            activation = extractor(img)
            loss = tf.reduce_mean(activation[:, :, :, filter_index])
        grads = tf.math.l2_normalize(tape.gradient(loss, img))
        return loss, img + learning_rate * grads

    start = time.perf_counter()
    for f in filters:
        img = tf.random.uniform((1, size, size, 3), -0.5, 0.5, seed=f)
        for _ in range(steps):
            loss, img = step(img, tf.constant(f), tf.constant(10.0))
        float(loss)
    return time.perf_counter() - start


def bench_speed(args) -> str:
    from generator import backend

    backend.select(args.backend)
    from generator.config import RenderConfig
    from generator.models import find_layer, load_model
    from generator.network import conv_flops
    from generator.render import LayerRenderer

    size, steps = args.size or 96, args.steps or 50
    loaded = load_model(weights=args.weights)
    layer = find_layer(SPEED_LAYER)
    n_single, n_batch = 8, 16
    fwd = conv_flops(layer, size)
    rows = []

    # warm-ups (compilation) are not timed; each is timed twice, alternating, and the best is kept
    runs = {}
    renderers = {}
    for method, lr in (("naive", 10.0), ("lucid", 0.05)):
        cfg = RenderConfig(weights=args.weights, weights_sha256=loaded.weights_sha256, method=method,
                           size=size, steps=steps, lr=lr, backend=backend.name())
        renderers[method] = LayerRenderer(loaded, layer, cfg)
        renderers[method].render_batch(list(range(n_batch)), n_batch)
    original_script(loaded, SPEED_LAYER, [0], size, 2)
    for _ in range(2):
        if backend.name() == "tensorflow":
            t = original_script(loaded, SPEED_LAYER, list(range(n_single)), size, steps)
            runs["original"] = min(runs.get("original", 1e9), t)
        for method in ("naive", "lucid"):
            t0 = time.perf_counter()
            renderers[method].render_batch(list(range(n_batch)), n_batch)
            runs[method] = min(runs.get(method, 1e9), time.perf_counter() - t0)
    counts = {"original": n_single, "naive": n_batch, "lucid": n_batch}
    rate = {k: counts[k] * steps / v for k, v in runs.items()}
    for name, label in (("original", f"original script, 1 filter at a time ({n_single} filters)"),
                        ("naive", f"`naive`, batched ({n_batch} filters per batch)"),
                        ("lucid", f"`lucid`, batched ({n_batch} filters per batch)")):
        if name not in runs:
            continue
        gflops = 2 * fwd * rate[name] / 1e9
        ratio = rate[name] / rate["original"] if "original" in rate else float("nan")
        rows.append(f"| {label} | {runs[name]:.1f} | {rate[name]:.1f} | {ratio:.2f}x | {gflops:.0f} |")
    return (
        f"### Speed on the CPU: {SPEED_LAYER}, {size} px, {steps} steps\n\n"
        f"Machine: {machine()}. Backend {backend.name()}, float32. "
        f"Command: `atlas bench speed --weights {args.weights}`. Best of two alternating runs after a warm-up.\n\n"
        "| method | seconds | filters·steps/s | vs original | GFLOP/s |\n| --- | ---: | ---: | ---: | ---: |\n"
        + "\n".join(rows)
        + f"\n\nGFLOP/s counts the direct-convolution multiply-adds (×2) of the model truncated at "
        f"{SPEED_LAYER} ({fwd / 1e9:.2f} GFLOP forward per image) and 2× that per step (forward, and the "
        "gradient with respect to the image; none for the weights). It is nominal: oneDNN may use Winograd "
        "convolutions, which do fewer multiplications. `lucid` also pays for its image parameterization "
        "and transforms."
    )


# --- throughput per layer (GPU or CPU) ----------------------------------------------------------


def bench_layers(args) -> str:
    from generator import backend

    backend.select(args.backend)
    from generator.config import RenderConfig
    from generator.models import load_model
    from generator.network import conv_flops
    from generator.render import LayerRenderer, auto_batch
    from generator.selection import parse_layers

    size, steps = args.size or 128, args.steps or 16
    loaded = load_model(weights=args.weights)
    precision = backend.resolve_precision("auto")
    cfg = RenderConfig(weights=args.weights, weights_sha256=loaded.weights_sha256, size=size, steps=steps,
                       precision=precision, backend=backend.name())
    rows, total_seconds, total_flop = [], 0.0, 0.0
    for layer in parse_layers(args.layers):
        batch = args.batch or auto_batch(layer, size, layer.filters)
        renderer = LayerRenderer(loaded, layer, cfg)
        filters = list(range(min(batch, layer.filters)))
        renderer.render_batch(filters, batch)  # compile
        t0 = time.perf_counter()
        renderer.render_batch(filters, batch)
        seconds = time.perf_counter() - t0
        per_filter_step = seconds / (len(filters) * steps)
        flop = 2 * conv_flops(layer, size) * len(filters) * steps
        at_default = per_filter_step * layer.filters * 256
        total_seconds += at_default
        total_flop += 2 * conv_flops(layer, size) * layer.filters * 256
        rows.append(f"| {layer.name} | {batch} | {1 / (per_filter_step * 256):.3f} "
                    f"| {flop / seconds / 1e12:.3f} | {at_default / 60:.1f} |")
    return (
        f"### Throughput per layer: {size} px, measured over {steps} steps, projected to 256 steps\n\n"
        f"Machine: {machine()}. Backend {backend.name()}, {precision}. "
        f"Command: `atlas bench layers --size {size} --steps {steps}`.\n\n"
        "| layer | batch | filters/s at 256 steps | TFLOP/s | minutes for all its filters at 256 steps |\n"
        "| --- | ---: | ---: | ---: | ---: |\n" + "\n".join(rows)
        + f"\n\nProjected whole atlas (4,224 filters, {size} px, 256 steps): **{total_seconds / 3600:.1f} h**, "
        f"{total_flop / 1e15:.1f} PFLOP of conv work."
    )


# --- quality -------------------------------------------------------------------------------------

VARIANTS = {
    "naive": dict(method="naive", lr=10.0),
    "lucid-port": dict(pre_share=1.0, wake=False),  # Lucid's defaults on the pre-ReLU channel mean
    "relu-objective": dict(wake=False),  # + the post-ReLU objective alone
    "wake": dict(pre_share=1.0),  # + the wake-up alone
    "contrast-start": dict(init_std=0.5),  # ours, from a start with contrast
    "lucid": dict(),  # ours: both
}


def bench_quality(args) -> str:
    from generator import backend

    backend.select(args.backend)
    from generator.config import RenderConfig
    from generator.models import load_model
    from generator.quality import judge
    from generator.render import LayerRenderer
    from generator.selection import parse_layers

    size, steps = args.size or 128, args.steps or 256
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise AtlasError(f"--variants {','.join(unknown)}: choose from {', '.join(VARIANTS)}")
    loaded = load_model(weights=args.weights)
    table = {}
    for layer in parse_layers(args.layers):
        filters = sorted(set(np.linspace(0, layer.filters - 1, args.sample).astype(int).tolist()))
        for name in variants:
            extra = dict(VARIANTS[name])
            v_size, v_steps = size, steps
            if name == "naive" and args.naive_original:
                v_size, v_steps = 96, 50
            cfg = RenderConfig(weights=args.weights, weights_sha256=loaded.weights_sha256, size=v_size,
                               steps=v_steps, backend=backend.name(), **extra)
            renderer = LayerRenderer(loaded, layer, cfg)
            images = []
            for i in range(0, len(filters), 16):
                images += [r.image for r in renderer.render_batch(filters[i : i + 16], 16)]
            q = judge(renderer, np.stack(images), filters)
            table[(layer.name, name)] = q
            print(f"{layer.name} {name}: dead {q.dead}/{q.filters} specificity {q.specificity:.2f}",
                  file=sys.stderr, flush=True)
    layers = list(dict.fromkeys(k[0] for k in table))
    head = "| layer | " + " | ".join(variants) + " |\n| --- |" + " ---: |" * len(variants)
    lines = [head]
    for name in layers:
        cells = [f"{table[(name, v)].dead} / {table[(name, v)].specificity:.2f}" for v in variants]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    total = [
        f"**{sum(table[(n, v)].dead for n in layers)} / "
        f"{np.mean([table[(n, v)].specificity for n in layers]):.2f}**"
        for v in variants
    ]
    lines.append("| all sampled | " + " | ".join(total) + " |")
    naive_note = " (`naive` at the original 96 px, 50 steps)" if args.naive_original and "naive" in variants else ""
    return (
        f"### Quality: dead / specificity, {args.sample} filters per layer, {size} px, {steps} steps{naive_note}\n\n"
        f"Machine: {machine()}. Weights `{args.weights}`, backend {backend.name()}. Command: "
        f"`atlas bench quality --size {size} --steps {steps} --sample {args.sample} --variants {args.variants}"
        f"{' --naive-original' if args.naive_original else ''}`.\n\n"
        "Each cell: dead filters (post-ReLU map all zero on the saved 8-bit image) / specificity (share of "
        "images whose own filter responds most, relative to its mean response over the sampled images).\n\n"
        + "\n".join(lines)
    )


# --- site build at full size ----------------------------------------------------------------------


def synthetic_atlas(root: Path, size: int, steps: int) -> None:
    """A full-size atlas (all 4,224 filters) with Fourier-noise pictures and plausible loss curves."""
    from generator.config import RenderConfig
    from generator.models import VGG16_LAYERS, LoadedModel
    from generator.params import fourier_constants, fourier_to_rgb, initial_spectrum, rgb_to_uint8
    from generator.render import RenderedFilter
    from generator.store import AtlasStore

    cfg = RenderConfig(weights="synthetic", weights_sha256="0" * 64, size=size, steps=steps)
    loaded = LoadedModel(None, "vgg16", "synthetic", "0" * 64, VGG16_LAYERS)
    store = AtlasStore(root, "vgg16")
    store.prepare(cfg, loaded, force=True)
    constants = fourier_constants(size)
    rng = np.random.default_rng(0)
    for layer in VGG16_LAYERS:
        rows = {}
        for start in range(0, layer.filters, 64):
            spec = np.stack([initial_spectrum(rng, size, 2.0) for _ in range(64)])
            images = rgb_to_uint8(np.asarray(fourier_to_rgb(spec, constants)))
            for i, image in enumerate(images):
                f = start + i
                final = -rng.uniform(5, 500)
                loss = final * (1 - np.exp(-np.arange(steps) / (steps / 5))) + rng.normal(0, 1, steps)
                result = RenderedFilter(f, image, loss.astype(np.float32), -final, final / 2, -final * 3,
                                        bool(rng.uniform() < 0.01), "float32", False)
                rows[f] = store.write_filter(layer, result, cfg)
        store.write_layer(layer, rows, cfg)
    store.write_manifest(cfg, loaded)


def _du(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())


def bench_site(args) -> str:
    from generator.site import build_site, stage_project

    size, steps = args.size or 128, args.steps or 256
    with tempfile.TemporaryDirectory(prefix="atlas-site-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        synthetic_atlas(tmp / "atlas", size, steps)
        t_data = time.perf_counter() - t0
        project = stage_project(tmp)
        t0 = time.perf_counter()
        pages = build_site(tmp / "atlas", project / "site_src")
        t_pages = time.perf_counter() - t0
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=project,
                              capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
        t_build = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            raise AtlasError(f"mkdocs build failed on the synthetic atlas: {proc.stderr.strip().splitlines()[-1]}")
        site = project / "site"
        filter_pages = list(site.glob("vgg16/block*_conv*/[0-9]*/index.html"))
        sizes = {
            "site": _du(site),
            "png": _du(site, "*.png"),
            "webp": _du(site, "[0-9][0-9][0-9][0-9].webp"),
            "thumb": _du(site, "*.thumb.webp"),
            "json": _du(site / "vgg16", "[0-9][0-9][0-9][0-9].json"),
            "pages": sum(p.stat().st_size for p in filter_pages),
            "search": (site / "search/search_index.json").stat().st_size,
        }
    mb = lambda b: f"{b / 2**20:.1f} MB"  # noqa: E731
    n = len(filter_pages)
    return (
        f"### Site build at full size: 4,224 filters, {size} px, {steps}-step loss curves (synthetic pictures)\n\n"
        f"Machine: {machine()}. Command: `atlas bench site`. "
        f"{'Peak memory of mkdocs: ' + mb(peak * 1024) if peak > before else ''}\n\n"
        "| step | figure |\n| --- | ---: |\n"
        f"| write the synthetic atlas | {t_data:.0f} s |\n"
        f"| `atlas site` ({pages} pages, WebP + thumbnails) | {t_pages:.0f} s |\n"
        f"| `mkdocs build --strict` | **{t_build:.0f} s** |\n"
        f"| site size | **{mb(sizes['site'])}** |\n"
        f"| of which PNG downloads | {mb(sizes['png'])} ({sizes['png'] / n / 1024:.1f} KB each) |\n"
        f"| of which display WebP | {mb(sizes['webp'])} ({sizes['webp'] / n / 1024:.1f} KB each) |\n"
        f"| of which thumbnails | {mb(sizes['thumb'])} ({sizes['thumb'] / n / 1024:.1f} KB each) |\n"
        f"| of which loss JSON | {mb(sizes['json'])} ({sizes['json'] / n / 1024:.1f} KB each) |\n"
        f"| of which filter pages | {mb(sizes['pages'])} ({sizes['pages'] / n / 1024:.1f} KB each) |\n"
        f"| search index | **{sizes['search'] / 1024:.0f} KB** |\n\n"
        "The synthetic pictures are Fourier noise of the same size as real ones; real pictures compress "
        "differently, so the image sizes are a guide, the page count, build time and index size are not."
    )


def main(args) -> int:
    out = Path(args.out)
    what = {"speed": bench_speed, "quality": bench_quality, "site": bench_site, "layers": bench_layers}
    text = what[args.what](args)
    stamp = time.strftime("%Y-%m-%d")
    section = f"{text}\n\n_Measured {stamp}._"
    name = args.what if args.what != "quality" else f"quality-{args.size or 128}-{args.steps or 256}"
    write_section(out, name, section)
    print(text)
    return 0
