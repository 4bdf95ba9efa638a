"""The site: pages from a stored atlas, MkDocs strict build, links inside the raw-HTML grids, bad atlases."""

from __future__ import annotations

import json
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
from generator.site import DEFAULT_SITE_URL, build_site, relative, stage_project
from tests.conftest import ROOT, error_line, run_atlas

LAYERS = ["block1_conv1", "block3_conv3", "block5_conv3"]


@pytest.fixture(scope="module")
def tiny_atlas(tmp_path_factory) -> Path:
    """Three filters of three layers, random weights, 32 px, 3 steps: the plumbing, not the pictures."""
    out = tmp_path_factory.mktemp("atlas") / "atlas"
    proc = run_atlas("generate", "--weights", "random", "--layers", ",".join(LAYERS), "--filters", "0-2",
                     "--size", "32", "--steps", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    naive = out.parent / "atlas-naive"
    proc = run_atlas("generate", "--weights", "random", "--layers", ",".join(LAYERS), "--filters", "0-1",
                     "--size", "32", "--steps", "2", "--method", "naive", "--out", str(naive))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def built_site(tiny_atlas, tmp_path_factory) -> Path:
    project = stage_project(tmp_path_factory.mktemp("site"))
    build_site(tiny_atlas, project / "site_src", compare=tiny_atlas.parent / "atlas-naive")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=project, capture_output=True, text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return project / "site"


def test_every_page_of_the_contract_exists(built_site):
    for url in ["", "vgg16/", "vgg16/block3/", "vgg16/block3_conv3/", "vgg16/block3_conv3/2/",
                "vgg16/block5_conv3/0/", "method/", "cite/", "vgg16/block2_conv1/"]:
        assert (built_site / url / "index.html").is_file(), url
    layer = (built_site / "vgg16/block3_conv3/0002.png")
    assert layer.is_file() and (built_site / "vgg16/block3_conv3/0002.json").is_file()
    assert (built_site / "vgg16/block3_conv3/0002.webp").is_file()
    assert (built_site / "vgg16/block3_conv3/0002.thumb.webp").is_file()


def test_method_page_compares_the_original_method(built_site):
    html = (built_site / "method/index.html").read_text()
    assert "Side by side" in html and html.count(".naive.webp") == 6  # 2 filters x 3 layers
    assert (built_site / "vgg16/block5_conv3/0001.naive.webp").is_file()


def test_filter_page_content(built_site):
    html = (built_site / "vgg16/block3_conv3/1/index.html").read_text()
    assert "VGG16 block3_conv3:1" in html
    assert "https://vgg16-filter-atlas.github.io/vgg16/block3_conv3/1/" in html
    assert "@misc" in html and "vgg16_block3_conv3_1" in html  # BibTeX, split by highlighting
    assert "<svg" in html and "<polyline" in html and ">step<" in html
    assert 'href="../0/"' in html and 'href="../2/"' in html  # prev / next
    assert "<td>Final activation</td>" in html  # the facts table rendered as a table


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
    assert not [loc for loc in locations if re.match(r"vgg16/block\d_conv\d/\d+/", loc)]
    assert any(loc.startswith("vgg16/block3_conv3/") for loc in locations)
    layer_page = (built_site / "vgg16/block3_conv3/index.html").read_text()
    nav = layer_page.split('class="md-content"')[0]
    assert 'block3_conv3/0/"' not in nav and "block3_conv3/0/" not in nav


def test_site_url_default_matches_mkdocs_yml():
    assert f'"{DEFAULT_SITE_URL}"' in (ROOT / "mkdocs.yml").read_text()


def test_relative_links():
    assert relative("vgg16/block3_conv3/", "vgg16/block3_conv3/80/") == "80/"
    assert relative("vgg16/block3_conv3/80/", "vgg16/block3_conv3/0080.webp") == "../0080.webp"
    assert relative("vgg16/block3_conv3/80/", "vgg16/") == "../../"
    assert paths.source_path("vgg16/block3_conv3/80/") == "vgg16/block3_conv3/80.md"
    assert paths.source_path("vgg16/block3/") == "vgg16/block3/index.md"


def _copy_atlas(src: Path, tmp: Path) -> Path:
    dst = tmp / "atlas"
    shutil.copytree(src, dst)
    return dst


def test_missing_image_or_json_is_one_line(tiny_atlas, tmp_path):
    atlas = _copy_atlas(tiny_atlas, tmp_path)
    (atlas / "vgg16/block3_conv3/0001.png").unlink()
    line = error_line(run_atlas("site", "--data", str(atlas), "--out", str(tmp_path / "out")))
    assert "block3_conv3/0001.png: missing image of block3_conv3:1" in line
    atlas2 = _copy_atlas(tiny_atlas, tmp_path / "b")
    (atlas2 / "vgg16/block5_conv3/0000.json").unlink()
    with pytest.raises(AtlasError, match="0000.json: missing loss JSON of block5_conv3:0"):
        build_site(atlas2, tmp_path / "out2")


def test_other_model_or_no_atlas_is_one_line(tiny_atlas, tmp_path):
    atlas = _copy_atlas(tiny_atlas, tmp_path)
    manifest = atlas / "vgg16/manifest.json"
    manifest.write_text(manifest.read_text().replace('"model": "vgg16"', '"model": "resnet50"', 1))
    assert "manifest of model 'resnet50', expected 'vgg16'" in error_line(
        run_atlas("site", "--data", str(atlas), "--out", str(tmp_path / "o")))
    assert "no atlas here" in error_line(run_atlas("site", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")))


def test_unsafe_names_are_refused_before_paths(tmp_path):
    line = error_line(run_atlas("site", "--model", "../etc", "--data", str(tmp_path), "--out", str(tmp_path / "o")))
    assert "model name '../etc': only lowercase letters, digits and _ are allowed" in line
    with pytest.raises(AtlasError, match="layer name 'Block1/../x'"):
        paths.layer_url("vgg16", "Block1/../x")
    assert not (tmp_path / "o").exists()
