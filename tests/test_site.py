"""The site: pages of every model from a stored atlas, MkDocs strict build, nav from the data, links
inside the raw-HTML grids, evidence on filter pages, the swap and the asset cache, bad atlases, and
user-given strings that mean something to Markdown or HTML shown as the text they are."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from generator import paths
from generator.errors import AtlasError
from generator.site import build_site, downloads_url, relative, site_url, stage_project
from generator.site.escape import bibtex_text, markdown_text
from generator.site.urls import DEFAULT_SITE_URL
from tests.conftest import ROOT, error_line, mkdocs_build, run_atlas
from tests.hostile import HOSTILE_FILES, HOSTILE_LICENSE, HOSTILE_NAME, HOSTILE_WEIGHTS


def test_every_page_of_the_contract_exists(built_site):
    for url in ["", "vgg16/", "vgg16/block3/", "vgg16/block3_conv3/", "vgg16/block3_conv3/2/",
                "vgg16/block5_conv3/0/", "method/", "cite/", "vgg16/block2_conv1/",
                "resnet50/", "resnet50/conv3/", "resnet50/conv3_block1_out/", "resnet50/conv3_block1_out/1/"]:
        assert (built_site / url / "index.html").is_file(), url
    assert (built_site / "vgg16/block3_conv3/0002.avif").is_file()
    assert (built_site / "vgg16/block3_conv3/0002.thumb.webp").is_file()
    assert (built_site / "vgg16/block3_conv3/0002.diversity-3.avif").is_file()
    assert (built_site / "vgg16/block3_conv3/0002.examples.webp").is_file()
    # lossless pictures and the per-filter JSON stay in the atlas data (the release)
    assert not list(built_site.rglob("[0-9][0-9][0-9][0-9].png")) and not list(built_site.rglob("[0-9][0-9][0-9][0-9].json"))


def test_landing_page_lists_the_models(built_site):
    html = (built_site / "index.html").read_text()
    assert 'href="vgg16/"' in html and 'href="resnet50/"' in html


def test_nav_comes_from_the_data(built_site):
    html = (built_site / "resnet50/conv3_block1_out/index.html").read_text()
    nav = html.split('class="md-content"')[0]
    assert "Stage 3" in nav and "conv3_block1_out" in nav and "ResNet50" in nav and "VGG16" in nav
    assert "conv3_block1_out/1/" not in nav


ZENSICAL = shutil.which("zensical", path=str(Path(sys.executable).parent))
CONTRACT = ["", "vgg16/", "vgg16/block3/", "vgg16/block3_conv3/", "vgg16/block3_conv3/2/", "vgg16/block5_conv3/0/",
            "resnet50/", "resnet50/conv3/", "resnet50/conv3_block1_out/", "resnet50/conv3_block1_out/1/",
            "colours/", "colours/red_detector/0/", "method/", "cite/"]


def test_the_nav_is_a_file_that_mkdocs_yml_inherits(built_site):
    """No plugin: ``atlas site`` writes the nav, which MkDocs and Zensical both read."""
    import yaml

    project = built_site.parent
    assert "INHERIT: site_src/.nav.yml" in (project / "mkdocs.yml").read_text()
    assert "atlas-nav" not in (project / "mkdocs.yml").read_text()
    nav = yaml.safe_load((project / "site_src/.nav.yml").read_text())["nav"]
    assert nav[0] == {"Home": "index.md"} and nav[-2:] == ["method.md", "cite.md"]
    assert [next(iter(e)) for e in nav[1:-2]] == ["VGG16", "ResNet50", "colours"]
    assert not (built_site / ".nav.yml").exists()


@pytest.mark.skipif(ZENSICAL is None, reason="zensical is not installed (pip install -e '.[dev]')")
def test_zensical_builds_the_site_with_the_contract_urls(built_site, tmp_path):
    """Material's successor builds the same pages from the same mkdocs.yml and nav: every contract URL,
    the nav from the data, filter pages out of the nav and the search index, strict."""
    project = tmp_path / "project"
    shutil.copytree(built_site.parent, project, ignore=shutil.ignore_patterns("site"))
    proc = subprocess.run([ZENSICAL, "build", "--strict", "-f", "mkdocs.yml"], cwd=project, capture_output=True,
                          text=True, env={"PATH": str(Path(sys.executable).parent), "NO_COLOR": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    site = project / "site"
    for url in CONTRACT:
        assert (site / url / "index.html").is_file(), url
    html = (site / "resnet50/conv3_block1_out/index.html").read_text()
    nav = html.split('class="md-content"')[0]
    assert "Stage 3" in nav and "conv3_block1_out" in nav and "VGG16" in nav and "conv3_block1_out/1/" not in nav
    index = json.loads((site / "search.json").read_text())  # Zensical's search index (Material's: search/)
    locations = [item["location"] for item in index["items"]]
    assert any(loc.startswith("vgg16/block3_conv3/") for loc in locations)
    assert not [loc for loc in locations if re.match(r"\w+/\w+/\d+/", loc)]
    page = (site / "vgg16/block3_conv3/1/index.html").read_text()
    assert "0001.avif" in page and "atlas-cite" in page and "assets/atlas.css" in page


def test_method_page_reads_the_manifests(built_site):
    html = (built_site / "method/index.html").read_text()
    assert "Top row of each layer" in html
    assert html.count(".naive.webp") == 6  # 2 filters x 3 layers
    assert "<strong>float32</strong>" in html and "2 steps of learning rate 10.0" in " ".join(html.split())


def test_filter_page_content(built_site):
    html = (built_site / "vgg16/block3_conv3/1/index.html").read_text()
    assert "VGG16 block3_conv3:1" in html
    assert "https://vgg16-filter-atlas.github.io/vgg16/block3_conv3/1/" in html
    assert "@misc" in html and "vgg16_block3_conv3_1" in html  # BibTeX, split by highlighting
    assert "<svg" in html and "<polyline" in html and ">step<" in html
    assert 'href="../0/"' in html and 'href="../2/"' in html  # prev / next
    for view in ("Channel", "Neuron", "Negative", "Diversity"):
        assert f">{view}</label>" in html, view
    assert html.count("0001.diversity-") == 4 and "0001.neuron.avif" in html
    assert "<code>atlas/vgg16/block3_conv3/0001.json</code>" in html  # where the numbers and loss curves are
    assert html.count('class="atlas-crops"') == 2 and "0001.examples.webp" in html and "tiles" in html
    assert 'class="mark"' in html  # where this filter's own picture falls among the images
    assert "the strongest real image" in html or "No real image turns" in html
    assert "Strongest positive inputs" in html and 'href="../../block3_conv2/' not in html  # not rendered: no link
    assert "atlas-kernel" in (built_site / "vgg16/block1_conv1/0/index.html").read_text()
    resnet = (built_site / "resnet50/conv3_block1_out/1/index.html").read_text()
    assert "ResNet50 conv3_block1_out:1" in resnet and "No dataset examples in this atlas yet" in resnet


def test_the_field_view_of_a_first_layer_is_a_tab_beside_the_other_views(built_site, tiny_atlas):
    html = (built_site / "vgg16/block1_conv1/1/index.html").read_text()  # 3 px field at 32 px: a 12 px canvas
    assert ">Field</label>" in html and 'src="../0001.field.avif"' in html and 'class="atlas-rf"' in html
    assert 'src="../0001.top1.webp" width="252"' in html and "that patch" in html  # its examples: the strongest patch
    trust = json.loads((tiny_atlas / "vgg16/block1_conv1/0001.json").read_text())["trust"]  # the view scored too
    field, summary = trust["field"], trust["summary"]
    assert summary["field_two_image"] == field["two_image"] and 0 <= field["two_image"] <= 1 and -1 <= field["path"] <= 1
    text = " ".join(re.sub(r"<[^>]+>", "", html).split())
    assert (f"two-image prediction {field['two_image']:.2f} (the channel picture's {summary['two_image']:.2f}), "
            f"path similarity {field['path']:.2f}") in text
    assert "At its own scale" in (built_site / "vgg16/block1_conv1/index.html").read_text()
    assert ">Field</label>" not in (built_site / "vgg16/block3_conv3/1/index.html").read_text()


def test_layer_page_shows_the_strongest_example_beside_each_picture(built_site):
    html = (built_site / "vgg16/block3_conv3/index.html").read_text()
    assert "With the strongest dataset example" in html and html.count(".top1.webp") == 3
    assert "conv3_block1_add" in (built_site / "resnet50/conv3_block1_out/index.html").read_text()


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.urls.append(value)


def _target_exists(site: Path, page_url: str, link: str) -> bool:
    url, _ = urldefrag(urljoin("http://x/" + page_url, link))
    parsed = urlparse(url)
    if parsed.netloc != "x":
        return True  # external (the permalink); not ours to check
    path = site / parsed.path.lstrip("/")
    return path.is_file() or (path / "index.html").is_file()


def test_every_link_and_image_resolves(built_site):
    """Strict mode does not check links inside raw HTML (the grids, the crumbs): check them all."""
    broken = []
    for page in built_site.rglob("index.html"):
        page_url = page.parent.relative_to(built_site).as_posix() + "/"
        page_url = "" if page_url == "./" else page_url
        parser = _Links()
        parser.feed(page.read_text())
        broken += [f"{page_url} -> {u}" for u in parser.urls if not _target_exists(built_site, page_url, u)]
    assert not broken, broken[:10]


def test_filter_pages_stay_out_of_nav_and_search(built_site):
    index = json.loads((built_site / "search/search_index.json").read_text())
    locations = [doc["location"] for doc in index["docs"]]
    assert not [loc for loc in locations if re.match(r"\w+/\w+/\d+/", loc)]
    assert any(loc.startswith("vgg16/block3_conv3/") for loc in locations)


def test_site_url_default_matches_mkdocs_yml():
    assert f'"{DEFAULT_SITE_URL}"' in (ROOT / "mkdocs.yml").read_text()


def test_relative_links():
    assert relative("vgg16/block3_conv3/", "vgg16/block3_conv3/80/") == "80/"
    assert relative("vgg16/block3_conv3/80/", "vgg16/block3_conv3/0080.avif") == "../0080.avif"
    assert relative("vgg16/block3_conv3/80/", "vgg16/") == "../../"
    assert paths.source_path("vgg16/block3_conv3/80/") == "vgg16/block3_conv3/80.md"
    assert paths.source_path("vgg16/block3/") == "vgg16/block3/index.md"


def _copy_atlas(src: Path, tmp: Path) -> Path:
    dst = tmp / "atlas"
    shutil.copytree(src, dst)
    return dst


def test_rebuild_reuses_unchanged_assets_and_a_failed_build_keeps_the_old_pages(tiny_atlas, tmp_path):
    atlas = _copy_atlas(tiny_atlas, tmp_path)
    out = tmp_path / "site_src"
    build_site(atlas, out)
    webp = out / "vgg16/block3_conv3/0001.avif"
    first = webp.stat().st_ino
    build_site(atlas, out)
    assert webp.stat().st_ino == first  # linked from the last build, not encoded again
    png = atlas / "vgg16/block3_conv3/0001.png"
    os.utime(png, (png.stat().st_atime, png.stat().st_mtime + 5))  # a changed picture is encoded again
    build_site(atlas, out)
    assert webp.stat().st_ino != first
    page = out / "vgg16/block3_conv3/1.md"
    before = page.read_text()
    (atlas / "vgg16/block5_conv3/0002.png").write_bytes(b"not a png")
    with pytest.raises(AtlasError, match="0002.png: not a readable image"):
        build_site(atlas, out)
    assert page.read_text() == before and not (out / ".atlas-new").exists()


def test_missing_image_or_json_is_one_line(tiny_atlas, tmp_path):
    atlas = _copy_atlas(tiny_atlas, tmp_path)
    (atlas / "vgg16/block3_conv3/0001.png").unlink()
    line = error_line(run_atlas("site", "--data", str(atlas), "--out", str(tmp_path / "out")))
    assert "block3_conv3/0001.png: missing image of block3_conv3:1" in line
    atlas2 = _copy_atlas(tiny_atlas, tmp_path / "b")
    (atlas2 / "vgg16/block5_conv3/0000.json").unlink()
    with pytest.raises(AtlasError, match="0000.json: missing loss JSON of block5_conv3:0"):
        build_site(atlas2, tmp_path / "out2")
    atlas3 = _copy_atlas(tiny_atlas, tmp_path / "c")
    (atlas3 / "vgg16/block3_conv3/0002.json").write_text('{"filter": 2, "loss": [0.5, ')  # a cut copy
    line = error_line(run_atlas("site", "--data", str(atlas3), "--out", str(tmp_path / "out3")))
    assert "0002.json: unreadable loss JSON of block3_conv3:2" in line and "atlas generate" in line
    (atlas2 / "vgg16/manifest.json").write_text("{broken")
    assert "manifest.json: unreadable manifest" in error_line(run_atlas("site", "--data", str(atlas2), "--out", str(tmp_path / "o")))


def test_other_model_or_no_atlas_is_one_line(tiny_atlas, tmp_path):
    atlas = _copy_atlas(tiny_atlas, tmp_path)
    manifest = atlas / "vgg16/manifest.json"
    manifest.write_text(manifest.read_text().replace('"model": "vgg16"', '"model": "resnet50"', 1))
    assert "manifest of model 'resnet50', expected 'vgg16'" in error_line(
        run_atlas("site", "--data", str(atlas), "--out", str(tmp_path / "o")))
    assert "no atlas here" in error_line(run_atlas("site", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")))


def test_the_field_view_shows_enlarged_beside_the_channel_picture_and_as_a_grid(tmp_path):
    atlas = tmp_path / "atlas"
    proc = run_atlas("generate", "--weights", "random", "--size", "32", "--steps", "2", "--layers",
                     "block1_conv1,block2_conv1", "--filters", "0-1", "--views", "channel,field", "--out", str(atlas))
    assert proc.returncode == 0, proc.stderr
    # filter 1's dataset examples (as `atlas examples` writes them): its strongest real patch beside the picture
    from PIL import Image

    folder = atlas / "vgg16/block1_conv1"
    centre = json.loads((folder / "0001.json").read_text())["views"]["field"]["centre"]
    Image.new("RGB", (2 * 64, 2 * 64), (90, 120, 200)).save(folder / "0001.examples.webp", format="WEBP")
    top = [{"image": "a.png", "value": abs(centre) / 2, "y": 3, "x": 4}, {"image": "b.png", "value": 0.1, "y": 1, "x": 1}]
    (folder / "0001.examples.json").write_text(json.dumps({
        "top": top, "bottom": top[::-1], "histogram": {"edges": [0.0, 1.0], "counts": [2]},
        "sprite": {"file": "0001.examples.webp", "cell": 64, "columns": 2}}))
    out = tmp_path / "site_src"
    build_site(atlas, out)
    page = (out / "vgg16/block1_conv1/1.md").read_text()
    tab = page[page.index('=== "Field"'):]
    tab = tab[:tab.index("## What real images")]
    # a 12 px canvas shown 21 times enlarged (a whole number: square pixels, CSS makes them sharp), the
    # centre unit's 3 px field outlined (pixels 5-7 of 12), the channel picture beside it
    assert ('<img src="../0001.field.avif" width="252" height="252" loading="lazy" alt="Field view of VGG16 '
            'block1_conv1:1: 12 by 12 pixels, enlarged 21 times">') in tab
    assert 'class="atlas-rf" style="top:41.7%;left:41.7%;width:25%;height:25%"' in tab
    assert '<img src="../0001.avif"' in tab and "channel view beside it" in tab
    assert "| Canvas | 12 px, the receptive field 3 px |" in tab and "| Centre unit before ReLU |" in tab
    assert '<img src="../0001.top1.webp" width="252" height="252"' in tab and "its strongest dataset example" in tab
    ratio = "%.3g" % (centre / (abs(centre) / 2))  # the field picture's centre unit against the photo's: 2 or -2
    assert f"**{ratio}×** that patch's" in " ".join(tab.split())
    assert "0000.top1.webp" not in (out / "vgg16/block1_conv1/0.md").read_text()  # no examples, no patch
    assert (out / "vgg16/block1_conv1/0001.field.avif").is_file()
    css = (ROOT / "site_src/assets/atlas.css").read_text()
    assert ".atlas-views img {" in css and "image-rendering: pixelated" in css.split(".atlas-views img {")[1].split("}")[0]
    assert ".atlas-pixelated img { image-rendering: pixelated; }" in css
    grid = (out / "vgg16/block1_conv1/index.md").read_text()
    assert '=== "At its own scale"' in grid and 'class="atlas-grid atlas-pixelated"' in grid
    assert '<img src="0000.field.avif" loading="lazy" alt="VGG16 block1_conv1:0, field view">' in grid
    # block2_conv1's 10 px field is not under a quarter of 32 px: no field view, no tab
    assert '"Field"' not in (out / "vgg16/block2_conv1/1.md").read_text()
    assert "own scale" not in (out / "vgg16/block2_conv1/index.md").read_text()


def test_unsafe_names_are_refused_before_paths():
    with pytest.raises(AtlasError, match="layer name 'Block1/../x'"):
        paths.layer_url("vgg16", "Block1/../x")


def test_site_needs_no_deep_learning_library(tiny_atlas, tmp_path):
    """The Pages workflow installs the package without TensorFlow: building pages must not import it."""
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('tensorflow', 'jax', 'keras'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from generator.cli.main import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", code, "site", "--data", str(tiny_atlas), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


# --- user-given strings ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_site(hostile_atlas, tmp_path_factory) -> Path:
    """The site of the atlas made from the hostile folder, with hostile names everywhere, built strict."""
    project = stage_project(tmp_path_factory.mktemp("hostile-site"))
    build_site(hostile_atlas[0], project / "site_src")
    proc = mkdocs_build(project)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return project / "site"


class _Page(HTMLParser):
    """A page's visible text (character references decoded), its links, script bodies and handlers."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.links, self.scripts, self.handlers, self.code, self.alts = [], [], [], [], [], []
        self._in = []

    def handle_starttag(self, tag, attrs):
        self._in.append(tag)
        for name, value in attrs:
            if name in ("href", "src", "action", "formaction", "xlink:href") and value:
                self.links.append(value)
            if name.startswith("on"):
                self.handlers.append(f"{tag} {name}={value}")
            if name == "alt" or (name == "title" and ("role", "img") in attrs):  # a picture's name
                self.alts.append(value)

    def handle_endtag(self, tag):
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data):
        if "script" in self._in:
            self.scripts.append(data)
        elif "style" not in self._in and "title" not in self._in:
            self.text.append(data)
            if "code" in self._in:
                self.code.append(data)


def _page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    page.visible = " ".join("".join(page.text).split())
    return page


def _as_shown(value: str) -> str:
    return " ".join(value.split())


def test_no_page_has_a_script_link_or_handler_from_user_strings(hostile_site):
    pages = list(hostile_site.rglob("*.html"))
    assert len(pages) > 20
    for path in pages:
        page = _page(path)
        assert not [u for u in page.links if u.strip().lower().startswith(("javascript:", "data:", "vbscript:"))], path
        assert not [s for s in page.scripts if "__pwned" in s], path
        assert not [h for h in page.handlers if "__pwned" in h], path


def test_user_strings_show_as_the_text_they_are(hostile_site, hostile_atlas):
    """The image set's name and licence, the weights file's name and the image file names: each shown
    whole, character for character (whitespace as one space), never as Markdown or HTML."""
    filters = [_page(p) for p in hostile_site.glob("vgg16/block1_conv1/[0-9]*/index.html")]
    assert filters and all(_as_shown(f"of {HOSTILE_NAME} ({HOSTILE_LICENSE})") in f.visible for f in filters)
    layer = _page(hostile_site / "vgg16/block2_conv1/index.html")
    assert _as_shown(HOSTILE_NAME) in layer.visible and _as_shown(HOSTILE_LICENSE) in layer.visible
    for page in (_page(hostile_site / "index.html"), _page(hostile_site / "method/index.html")):
        assert _as_shown(HOSTILE_WEIGHTS) in page.code, page.code  # in <code>, & as &, not &amp;amp;
    bib = "".join(filters[0].code)
    assert f"weights {bibtex_text(HOSTILE_WEIGHTS)}, sha256" in bib and "&amp;amp;" not in bib
    shown = set()
    for path in hostile_site.glob("vgg16/*/[0-9]*/index.html"):  # the crops' file names, as they are
        layer, f = path.parent.parent.name, int(path.parent.name)
        record = json.loads((hostile_atlas[0] / f"vgg16/{layer}/{f:04d}.examples.json").read_text())
        names = {e["image"] for e in record["top"] + record["bottom"]}
        alts = _page(path).alts  # each crop's text names its image file, character for character
        assert all(any(name in alt for alt in alts) for name in names), (path, names, alts)
        shown |= names
    assert {f"names/{name}" for name in HOSTILE_FILES} & shown and "special/caf\\xe9.png" in shown


def test_the_site_shows_no_local_path(hostile_site, hostile_weights):
    folder = str(hostile_weights.parent)
    for path in hostile_site.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".json", ".xml", ".txt", ".js"):
            assert folder not in path.read_text(errors="replace"), path


def test_site_and_download_addresses_must_be_web_addresses(monkeypatch):
    monkeypatch.setenv("ATLAS_SITE_URL", "javascript:alert(1)//")
    with pytest.raises(AtlasError, match="ATLAS_SITE_URL"):
        site_url()
    monkeypatch.setenv("ATLAS_SITE_URL", "https://example.org/atlas")
    assert site_url() == "https://example.org/atlas/"
    monkeypatch.setenv("ATLAS_DOWNLOADS_URL", "https://x.org/a) [y](javascript:alert(1)")
    with pytest.raises(AtlasError, match="ATLAS_DOWNLOADS_URL"):
        downloads_url()


# --- a user's own network ---------------------------------------------------------------------------------


def test_a_users_network_has_its_pages_accuracy_and_classes(built_site, user_atlas):
    html = (built_site / "colours/index.html").read_text()
    sha = json.loads((user_atlas / "colours/manifest.json").read_text())["user_model"]["sha256"]
    assert markdown_text("colours.keras") in html and sha in html and str(user_atlas.parent) not in html
    assert "How well it classifies" in html and "top-1 accuracy" in html and "Worst classes" in html
    landing = (built_site / "index.html").read_text()
    assert 'href="colours/"' in landing and sha[:16] in landing
    nav = (built_site / "colours/sep3/index.html").read_text().split('class="md-content"')[0]
    assert "Stage 2" in nav and "conv2_relu" in nav and "VGG16" in nav
    page = (built_site / "colours/red_detector/0/index.html").read_text()
    assert ">Classes</h2>" in page and "6 of 6" in page and "votes for" in page
    layer = (built_site / "colours/sep3/index.html").read_text()
    assert layer.count('class="atlas-caption"') == 3 and "In its corner: the class most" in layer
    for f in range(3):
        assert ">Classes</h2>" in (built_site / f"colours/conv1/{f}/index.html").read_text()
    for url in ("colours/stage1/", "colours/stage2/", "colours/conv2_relu/2/"):
        assert (built_site / url / "index.html").is_file(), url


def test_class_names_are_text_not_markdown(tiny_atlas, tmp_path):
    """A class (a folder or label a user named) never becomes a link, emphasis, a table cell or HTML."""
    atlas = _copy_atlas(tiny_atlas, tmp_path)
    hostile = "[x](javascript:alert(1)) *b* | <img src=x onerror=alert(1)>"
    for path in [atlas / "colours/accuracy.json", *(atlas / "colours").glob("*/0000.examples.json")]:
        path.write_text(path.read_text().replace('"green"', json.dumps(hostile)))
    project = stage_project(tmp_path / "p")
    build_site(atlas, project / "site_src")
    proc = mkdocs_build(project)
    assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr
    site = project / "site"
    for page in [site / "colours/index.html", *site.glob("colours/*/0/index.html"), site / "colours/sep3/index.html"]:
        text = page.read_text()
        assert 'href="javascript' not in text and "<img src=x" not in text and "<em>b</em>" not in text, page
    model_page = (site / "colours/index.html").read_text()
    assert str(markdown_text(hostile)) in model_page  # shown as the text it is


def test_a_users_folder_is_marked_swapped_and_removed(tiny_atlas, tmp_path):
    from generator.site.staging import MARKER, generated_folders

    atlas = _copy_atlas(tiny_atlas, tmp_path)
    out = tmp_path / "site_src"
    (out / "assets").mkdir(parents=True)
    build_site(atlas, out)
    assert (out / "colours/.gitignore").read_text() == MARKER
    assert generated_folders(out) == ["colours", "resnet50", "vgg16"]
    shutil.rmtree(atlas / "colours")
    build_site(atlas, out)
    assert not (out / "colours").exists() and (out / "assets").is_dir()


def test_trust_on_filter_layer_and_method_pages(built_site):
    html = (built_site / "vgg16/block3_conv3/1/index.html").read_text()
    assert "How far to trust this picture" in html
    for check in ("Beyond nature", "Path similarity", "Two-image prediction", "Seed agreement"):
        assert check in html, check
    assert "the strongest photo" in html and "Reading:" in html and 'class="atlas-plot atlas-path"' in html
    assert html.count("<circle") == 7 and 'class="baseline"' in html  # one point per layer up to block3_conv3
    assert 'href="../../../method/#how-far-to-trust-a-picture"' in html
    layer = (built_site / "vgg16/block3_conv3/index.html").read_text()
    assert "How far to trust each picture" in layer and layer.count('class="atlas-trust-table atlas-sortable"') == 1
    assert layer.count('<td data-sort="') == 3 * 7 and 'href="1/"' in layer
    no_examples = (built_site / "vgg16/block5_conv3/0/index.html").read_text()
    assert "No trust scores in this atlas yet" in no_examples
    assert "How far to trust each picture" not in (built_site / "vgg16/block5_conv3/index.html").read_text()
    method = (built_site / "method/index.html").read_text()
    assert "Don&rsquo;t trust your eyes" in method or "Don't trust your eyes" in method
    assert "How well do feature visualizations support causal understanding" in method
    assert "VGG16: means per layer" in method and 'href="../vgg16/block3_conv3/"' in method
