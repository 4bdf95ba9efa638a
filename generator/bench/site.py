"""``atlas bench site``: build the site of a full-size synthetic atlas (every filter of a model, every
view, dataset examples and wiring) and report time, memory and size, against the 500 MB budget."""

from __future__ import annotations

import dataclasses
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from generator.errors import AtlasError

BUDGET_MB = 500


def _loaded(model: str):
    from generator.network.layers import model_layers
    from generator.network.models import LoadedModel
    from generator.network.zoo import model_spec

    return LoadedModel(None, model_spec(model), "synthetic", "0" * 64, model_layers(model))


def _pictures(rng, count: int, size: int, constants) -> np.ndarray:
    from generator.network.inputs import rgb_to_uint8
    from generator.render.params import fourier_to_rgb, initial_spectrum

    spec = np.stack([initial_spectrum(rng, size, 2.0) for _ in range(count)])
    return rgb_to_uint8(np.asarray(fourier_to_rgb(spec, constants)))


def _crops(rng, photos: list[np.ndarray], count: int, cell: int) -> np.ndarray:
    """Crops of real photographs (they compress as dataset examples do), or noise without them."""
    if not photos:
        return rng.integers(0, 256, (count, cell, cell, 3), dtype=np.uint8)
    out = np.empty((count, cell, cell, 3), np.uint8)
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        y, x = rng.integers(0, photo.shape[0] - cell + 1), rng.integers(0, photo.shape[1] - cell + 1)
        out[i] = photo[y:y + cell, x:x + cell]
    return out


def _histogram(rng, images: int = 50_000) -> list[int]:
    """Counts of a filter's strongest response per image: normal in the symlog axis, centred between
    10 and 3,000, 0.3-0.7 decades wide. That fills 38 bins at the median, where the real histograms of
    the 292 sample images fill 18 (50,000 images reach further into the tails)."""
    from generator.evidence.tracker import HIST_BINS, HIST_DECADES

    level = rng.normal(rng.uniform(1.0, 3.5), rng.uniform(0.3, 0.7), images)
    bins = np.clip(np.floor((level + HIST_DECADES) / (2 * HIST_DECADES) * HIST_BINS), 0, HIST_BINS - 1)
    return np.bincount(bins.astype(int), minlength=HIST_BINS).tolist()


def synthetic_atlas(root: Path, model: str, size: int, steps: int, top: int = 16, only: str = "all") -> int:
    """A full-size atlas of ``model``: every filter, every view, examples and wiring records of the
    real shapes, pictures of Fourier noise and crops of photographs. Returns the filter count.
    ``only``: these layers (``--layers``, comma-separated), not all of them."""
    from PIL import Image

    from generator.atlas.files import atomic_write_bytes, atomic_write_json
    from generator.atlas.store import AtlasStore
    from generator.evidence.tracker import histogram_edges
    from generator.passes.examples_files import CELL
    from generator.render.config import RenderConfig
    from generator.render.params import fourier_constants
    from generator.render.renderer import RenderedView
    from generator.render.views import VIEWS, views_of

    loaded = _loaded(model)
    if only != "all":
        from generator.network.selection import parse_layers

        names = {x.name for x in parse_layers(only, model)}
        loaded = dataclasses.replace(loaded, layers=tuple(x for x in loaded.layers if x.name in names))
    cfg = RenderConfig(model=model, weights="synthetic", weights_sha256="0" * 64, size=size, steps=steps)
    store = AtlasStore(root, model)
    store.prepare(cfg, loaded, force=True)
    constants = fourier_constants(size)
    rng = np.random.default_rng(0)
    photos = []
    try:
        from generator.evidence.imagesets import SAMPLE_PHOTOS, sample_photos_folder

        folder = sample_photos_folder()
        photos = [np.asarray(Image.open(folder / name).convert("RGB")) for name in SAMPLE_PHOTOS[:6]]
    except AtlasError:
        pass
    edges = histogram_edges()
    count = 0
    for layer in loaded.layers:
        rows = {}
        wiring = {}
        # a real atlas's views (the field view in early layers only), less accentuation: comparable with earlier figures
        views = views_of([v for v in VIEWS.values() if not v.from_photo], layer, size)
        for start in range(0, layer.filters, 32):
            chunk = range(start, min(layer.filters, start + 32))
            for view in views:
                side = view.canvas(layer, size)
                images = _pictures(rng, len(chunk) * view.images, side, constants if side == size else fourier_constants(side))
                for i, f in enumerate(chunk):
                    final = -rng.uniform(5, 500)
                    loss = final * (1 - np.exp(-np.arange(steps) / (steps / 5))) + rng.normal(0, 1, steps)
                    measures = {"activation": -final, "pre_relu_mean": final / 2, "pre_relu_max": -final * 3,
                                "centre": -final, "coverage": 1.0}
                    result = RenderedView(f, view, list(images[i * view.images:(i + 1) * view.images]),
                                          loss.astype(np.float32), measures, bool(rng.uniform() < 0.01))
                    record = store.write_view(layer, result, cfg)
                    if view.name == "channel":
                        rows[f] = record
            for f in chunk:
                crops = _crops(rng, photos, 2 * top, CELL)
                sprite = np.concatenate([np.concatenate(list(crops[:top]), axis=1), np.concatenate(list(crops[top:]), axis=1)])
                buffer = io.BytesIO()
                Image.fromarray(sprite).save(buffer, format="WEBP", quality=80, method=4)
                atomic_write_bytes(store.paths.examples_sprite(layer.name, f), buffer.getvalue())
                entries = [{"image": f"n{int(rng.integers(1e8)):08d}.JPEG", "value": float(v), "y": 3, "x": 4}
                           for v in sorted(rng.uniform(0, 300, top), reverse=True)]
                atomic_write_json(store.paths.examples_json(layer.name, f), {
                    "model": model, "layer": layer.name, "filter": f, "top": entries, "bottom": entries[::-1],
                    "histogram": {"edges": edges, "counts": _histogram(rng)},
                    "sprite": {"file": store.paths.examples_sprite(layer.name, f).name, "cell": CELL, "columns": top},
                }, indent=None)
                others = [{"layer": layer.name, "filter": int(g), "weight": 0.1} for g in rng.integers(0, layer.filters, 8)]
                wiring[str(f)] = {"excite": others, "inhibit": others, "excites": others, "inhibits": others}
                count += 1
        from generator.atlas.records import layer_row

        store.write_layer(layer, {f: layer_row(r, [v.name for v in views]) for f, r in rows.items()}, cfg)
        atomic_write_json(store.paths.wiring_json(layer.name), {"rule": "synthetic", "filters": wiring}, indent=None)
    store.write_manifest(cfg, loaded, extra={"examples": {"images": {
        "folder": "val", "count": 50000, "skipped": 0, "list_sha256": "0" * 64, "size": 224,
        "name": "synthetic", "license": None}, "top": top, "layers": [x.name for x in loaded.layers]}})
    return count


def _kept(data: Path, model: str, size: int, steps: int) -> int | None:
    """The filter count when ``data`` holds a complete synthetic atlas of this model, size and steps
    (``--keep``); None when it must be written."""
    from generator.atlas.files import read_json

    if data.exists() and not data.is_dir():
        raise AtlasError(f"--keep {data}: a file, not a folder; name a folder (it is made if missing)")
    manifest = data / model / "manifest.json"
    if not manifest.exists():
        return None
    kept = read_json(manifest, "manifest of the kept synthetic atlas")
    config = kept.get("config", {})
    if config.get("weights") != "synthetic":
        raise AtlasError(f"{data}: holds a real atlas, not a synthetic one; name an empty folder with --keep")
    complete = "examples" in kept and all(x["rendered"] == x["filters"] for x in kept.get("layers", [{}]))
    if not complete or (config.get("size"), config.get("steps")) != (size, steps):
        return None  # written again
    return sum(x["filters"] for x in kept["layers"])


def _mkdocs_build(project: Path) -> tuple[float, int, int]:
    """``mkdocs build --strict`` of a staged project: its seconds, and the children's peak resident
    memory (KiB) before and after it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=project,
                          capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise AtlasError(f"mkdocs build failed on the synthetic atlas: {proc.stderr.strip().splitlines()[-1]}")
    return seconds, before, peak


def _du(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())


def run(args, network) -> tuple[str, str]:
    from generator.bench import machine
    from generator.network import backend
    from generator.site import build_site, stage_project

    backend.select(args.backend)  # machine() reads the device; the build itself needs no backend
    size, steps = args.size or 128, args.steps or 256
    model = network.name
    with tempfile.TemporaryDirectory(prefix="atlas-site-bench-") as tmp:
        tmp = Path(tmp)
        data = Path(args.keep) if args.keep else tmp / "atlas"
        filters, t_data = _kept(data, model, size, steps), None  # t_data stays None when reused
        if filters is None:
            t0 = time.perf_counter()
            filters = synthetic_atlas(data, model, size, steps, only=getattr(args, "layers", "all"))
            t_data = time.perf_counter() - t0
        if getattr(args, "assets_url", None):
            made = (filters, t_data, size, steps, getattr(args, "layers", "all"))
            return split_off(args.assets_url, model, data, tmp, made, machine())
        project = stage_project(tmp)
        t0 = time.perf_counter()
        pages = build_site(data, project / "site_src")
        t_pages = time.perf_counter() - t0
        t0 = time.perf_counter()
        pages_again = build_site(data, project / "site_src")
        t_again = time.perf_counter() - t0
        t_build, before, peak = _mkdocs_build(project)
        site = project / "site"
        filter_pages = list(site.glob(f"{model}/*/[0-9]*/index.html"))
        sizes = {
            "site": _du(site),
            "channel": _du(site, "[0-9][0-9][0-9][0-9].avif"),
            "views": _du(site, "[0-9][0-9][0-9][0-9].*.avif"),
            "thumb": _du(site, "*.thumb.webp"),
            "examples": _du(site, "*.examples.webp") + _du(site, "*.top1.webp"),
            "pages": sum(p.stat().st_size for p in filter_pages),
            "search": (site / "search/search_index.json").stat().st_size,
        }
    mb = lambda b: f"{b / 2**20:.1f} MB"  # noqa: E731
    n = max(1, len(filter_pages))
    each = lambda key: f"{mb(sizes[key])} ({sizes[key] / n / 1024:.1f} KB a filter)"  # noqa: E731
    verdict = "within" if sizes["site"] / 2**20 <= BUDGET_MB else "**over**"
    text = (
        f"### Site build of {model} at full size: {filters:,} filters, every view, dataset examples, wiring "
        f"({size} px, {steps}-step loss curves, synthetic pictures)\n\n"
        f"Machine: {machine()}. Command: `atlas bench site --model {model}`"
        f"{' (synthetic atlas reused from `--keep`)' if t_data is None else ''}. "
        f"{'Peak memory of mkdocs: ' + mb(peak * 1024) + '.' if peak > before else ''}\n\n"
        "| step | figure |\n| --- | ---: |\n"
        + (f"| write the synthetic atlas | {t_data:.0f} s |\n" if t_data is not None else "")
        + f"| `atlas site` ({pages:,} pages) | {t_pages:.0f} s |\n"
        f"| `atlas site` again, nothing changed (assets reused) | {t_again:.0f} s |\n"
        f"| `mkdocs build --strict` | **{t_build:.0f} s** |\n"
        f"| site size | **{mb(sizes['site'])}**, {verdict} the {BUDGET_MB} MB budget |\n"
        f"| of which channel pictures (AVIF) | {each('channel')} |\n"
        f"| of which the other views (AVIF) | {each('views')} |\n"
        f"| of which thumbnails | {each('thumb')} |\n"
        f"| of which dataset-example sprites | {each('examples')} |\n"
        f"| of which filter pages | {each('pages')} |\n"
        f"| search index | **{sizes['search'] / 1024:.0f} KB** |\n\n"
        "The synthetic pictures are Fourier noise of the same size as real ones and the crops come from "
        "photographs; real pictures compress differently (15 real 128 px channel pictures of five VGG16 layers "
        "encode 5% larger than these at the same settings), so the image sizes are a guide, the page count, "
        "build time and index size are not. The lossless PNGs and each filter's JSON (numbers, loss curves) stay "
        "in the atlas data (the release), not on the site."
        + ("" if pages_again == pages else f" (second build: {pages_again} pages)")
    )
    return f"site-{model}", text



def split_off(url: str, model: str, data: Path, tmp: Path, made: tuple, host: str) -> tuple[str, str]:
    """The site with its pictures split off to a bucket (``atlas site --assets-url``): the pages that
    stay on GitHub Pages, against its 1 GB, and the pictures to upload. ``made``: (filters, seconds the
    synthetic atlas took or None, size, steps)."""
    from generator.site import build_site, stage_project
    from generator.site.publish import PAGES_LIMIT, advice, measure

    filters, t_data, size, steps, only = made
    project = stage_project(tmp)
    upload = tmp / "site-assets"
    t0 = time.perf_counter()
    pages = build_site(data, project / "site_src")
    t_pages = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_site(data, project / "site_src", assets_url=url, assets_dir=upload)
    t_split = time.perf_counter() - t0
    t_build, before, peak = _mkdocs_build(project)
    site = project / "site"
    size_of = measure(site)
    filter_pages = list(site.glob(f"{model}/*/[0-9]*/index.html"))
    page_bytes = sum(p.stat().st_size for p in filter_pages)
    files = sum(1 for _ in upload.iterdir())
    _, said = advice(size_of)  # what `make publish` checks before it pushes
    mb = lambda b: f"{b / 2**20:.1f} MB"  # noqa: E731
    text = (
        f"### Site of {model} with its pictures split off: {filters:,} filters"
        f"{'' if only == 'all' else ' of ' + only} ({size} px, {steps}-step loss curves, synthetic pictures)\n\n"
        f"Machine: {host}. Command: `atlas bench site --model {model} --size {size}"
        f"{'' if only == 'all' else ' --layers ' + only} --assets-url URL`"
        f"{' (synthetic atlas reused from `--keep`)' if t_data is None else ''}. "
        f"{'Peak memory of mkdocs: ' + mb(peak * 1024) + '.' if peak > before else ''}\n\n"
        "| step | figure |\n| --- | ---: |\n"
        + (f"| write the synthetic atlas | {t_data:.0f} s |\n" if t_data is not None else "")
        + f"| `atlas site` ({pages:,} pages, pictures beside them) | {t_pages:.0f} s |\n"
        f"| `atlas site --assets-url URL` (pictures taken over, hashed, moved out) | {t_split:.0f} s |\n"
        f"| `mkdocs build --strict` | {t_build:.0f} s |\n"
        f"| site for GitHub Pages (HTML, search index, theme) | **{size_of.total / 1e9:.3f} GB**, "
        f"{'under' if size_of.total <= PAGES_LIMIT else '**over**'} its 1 GB |\n"
        f"| of which filter pages | {mb(page_bytes)} ({page_bytes / max(1, len(filter_pages)) / 1024:.1f} KB a filter) |\n"
        f"| pictures left on the site | {mb(size_of.pictures)} |\n"
        f"| pictures to upload (site-assets/) | {mb(_du(upload))} in {files:,} files named by content |\n"
        f"| `make publish`'s check (`python -m generator.site.publish site`) | {'; '.join(said)} |\n"
        + ("" if only == "all" else  # one layer measured: its bytes a page, for every filter of the network
           f"| pages for all {len(_loaded(model).layers)} layers at this size a filter "
           f"({sum(x.filters for x in _loaded(model).layers):,} filters) | "
           f"{page_bytes / max(1, len(filter_pages)) * sum(x.filters for x in _loaded(model).layers) / 1e9:.3f} GB "
           "(projected) |\n")
        + "\n"
        f"The pictures' bytes depend on the size ({size} px here); the pages' do not (each loss curve is thinned "
        "to 64 points), so the HTML figure is that of the full-size atlas."
    )
    return f"site-split-{model}", text
