"""Publishing past GitHub Pages' 1 GB: ``atlas site --assets-url URL`` links every picture from a bucket
by its content hash and leaves the pages without pictures; each model can be its own site. Served from
two local servers (pages, pictures), Chromium shows every picture."""

from __future__ import annotations

import json
import re
import socket

import pytest

from generator.errors import AtlasError
from generator.site import build_site, stage_project
from generator.site.offsite import OFFSITE, PICTURES, page_url
from tests.conftest import error_line, mkdocs_build, run_atlas
from tests.test_browser import (  # noqa: F401 - fixtures
    CHROMIUM,
    _all_images_loaded,
    _serving,
    browser,
    open_page,
)

NAME = re.compile(r"^[0-9a-f]{20}\.(avif|webp)$")


def _free_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


@pytest.fixture(scope="module")
def offsite(tiny_atlas, tmp_path_factory):
    """The tiny atlas built with --assets-url: (project folder, upload folder, assets URL, pages built)."""
    base = tmp_path_factory.mktemp("offsite")
    project = stage_project(base)
    upload = base / "bucket"
    url = _free_port_url()
    pages = build_site(tiny_atlas, project / "site_src", compare=tiny_atlas.parent / "atlas-naive",
                       assets_url=url, assets_dir=upload)
    proc = mkdocs_build(project)
    assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr
    return project, upload, url, pages


def test_pictures_leave_the_pages_and_are_named_by_content(offsite, built_site):
    project, upload, url, _ = offsite
    site = project / "site"
    assert not [p for p in site.rglob("*") if p.suffix in PICTURES and "assets" not in p.parts]
    names = sorted(p.name for p in upload.iterdir())
    assert names and all(NAME.match(n) for n in names), names[:5]
    # every picture of the ordinary build is in the bucket under its hash, and the pages link it
    html = (site / "vgg16/block3_conv3/1/index.html").read_text()
    sprites = set(re.findall(r'url\(([^)"]+)\)', html))  # a row of dataset examples names its sprite in its style
    assert sprites and all(u.startswith(url) for u in sprites)
    linked = set(re.findall(r'src="([^"]+)"', html)) | sprites
    assert {u for u in linked if u.startswith(url)} and not {u for u in linked if u.endswith((".avif", ".webp"))
                                                              and not u.startswith(url)}
    for u in linked:
        if u.startswith(url):
            assert (upload / u[len(url):]).is_file(), u
    ours = sum(1 for p in built_site.rglob("*") if p.suffix in (".avif", ".webp"))
    assert 0 < len(names) <= ours  # identical pictures share one file
    # the page URLs are those of the contract
    for page in ["", "vgg16/", "vgg16/block3/", "vgg16/block3_conv3/", "vgg16/block3_conv3/2/", "method/"]:
        assert (site / page / "index.html").is_file(), page


def test_a_second_build_takes_the_pictures_over_unchanged(offsite, tiny_atlas, monkeypatch):
    """Nothing is encoded again: every picture comes from the upload folder, by the names in OFFSITE."""
    from generator.site import filter_page, method_page

    def never(*_):  # a builder factory whose builder fails the test when the cache does not take over
        def build(target):
            raise AssertionError(f"{target}: encoded again")
        return build

    for module, names in ((filter_page, ("avif", "webp", "copy_file", "crop_first")), (method_page, ("webp",))):
        for name in names:
            monkeypatch.setattr(module, name, never)
    project, upload, url, pages = offsite
    before = {p.name: p.stat().st_mtime_ns for p in upload.iterdir()}
    filter_page = project / "site_src/vgg16/block3_conv3/1.md"
    text = filter_page.read_text()
    assert (project / "site_src/vgg16" / OFFSITE).is_file()
    assert build_site(tiny_atlas, project / "site_src", compare=tiny_atlas.parent / "atlas-naive",
                      assets_url=url, assets_dir=upload) == pages
    assert {p.name: p.stat().st_mtime_ns for p in upload.iterdir()} == before
    assert filter_page.read_text() == text


def test_each_model_its_own_site(tiny_atlas, tmp_path):
    project = stage_project(tmp_path)
    build_site(tiny_atlas, project / "site_src", models=["resnet50"])
    proc = mkdocs_build(project)
    assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr
    site = project / "site"
    assert (site / "resnet50/conv3_block1_out/1/index.html").is_file()
    assert not (site / "vgg16").exists() and not (site / "colours").exists()
    assert 'href="vgg16/' not in (site / "index.html").read_text()


def test_page_urls_of_markdown_files():
    assert page_url("vgg16/block3_conv3/80.md") == "vgg16/block3_conv3/80"
    assert page_url("vgg16/block3_conv3/index.md") == "vgg16/block3_conv3"
    assert page_url("method.md") == "method"
    assert page_url("index.md") == ""
    assert page_url("_models.md") == ""  # the landing page's snippet


def test_bad_publishing_options_say_what_to_do(tiny_atlas, tmp_path):
    out = str(tmp_path / "site_src")
    line = error_line(run_atlas("site", "--data", str(tiny_atlas), "--out", out, "--assets-url", "ftp://bucket/x"))
    assert "--assets-url" in line and "http" in line
    line = error_line(run_atlas("site", "--data", str(tiny_atlas), "--out", out, "--assets-url", "https://b.example/",
                                "--assets-dir", out + "/up"))
    assert "--assets-dir" in line and "outside" in line
    line = error_line(run_atlas("site", "--data", str(tiny_atlas), "--out", out, "--models", "alexnet"))
    assert "alexnet" in line and "resnet50" in line
    with pytest.raises(AtlasError):
        build_site(tiny_atlas, out, assets_url="https://b.example/a b")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make browser, as root)")
def test_pages_and_pictures_from_two_servers_show_every_picture(offsite, browser):  # noqa: F811
    project, upload, url, _ = offsite
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with _serving(upload, port) as assets, _serving(project / "site") as pages:
        assert assets == url
        for page_path in ["", "vgg16/", "vgg16/block3/", "vgg16/block3_conv3/", "vgg16/block3_conv3/1/",
                          "colours/red_detector/0/", "method/"]:
            page, errors = open_page(browser, pages + page_path)
            # every picture now: headless Chromium sometimes leaves a lazy picture of another origin in a
            # tab that was hidden unrequested, which a person's scrolling does not meet
            page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
            for tab in page.locator(".tabbed-labels label").all():  # every tab's pictures in turn
                if tab.is_visible():
                    tab.click()
                    widths = _all_images_loaded(page, "article img")
                    assert widths and all(w > 0 for w in widths), (page_path, widths)
            widths = _all_images_loaded(page, "article img")
            assert widths and all(w > 0 for w in widths), (page_path, widths)
            sources = page.eval_on_selector_all("article img", "is => is.map(i => i.currentSrc)")
            assert all(s.startswith(url) for s in sources), (page_path, sources)
            assert not errors, (page_path, errors)
            page.close()


# --- versioned permalinks ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def versioned(tiny_atlas, tmp_path_factory, monkeypatch_module):
    """The tiny atlas published as version 1.0, then (re-rendered: one picture changed) as 2.0, into one
    folder as it would be on gh-pages."""
    from generator.site.versions import deploy

    base = tmp_path_factory.mktemp("versions")
    published = base / "gh-pages"
    for version in ("1.0", "2.0"):
        monkeypatch_module.setenv("ATLAS_SITE_VERSION", version)
        project = stage_project(base / version)
        build_site(tiny_atlas, project / "site_src")
        proc = mkdocs_build(project)
        assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr
        (project / "site/vgg16/block3_conv3/0001.avif").write_bytes(version.encode())  # tells the versions apart
        deploy(project / "site", published, version)
    return published


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_versions_live_under_their_own_path(versioned):
    versions = json.loads((versioned / "versions.json").read_text())
    assert [(v["version"], v["aliases"]) for v in versions] == [("2.0", ["latest"]), ("1.0", [])]
    assert (versioned / "1.0/vgg16/block3_conv3/0001.avif").read_bytes() == b"1.0"
    assert (versioned / "2.0/vgg16/block3_conv3/0001.avif").read_bytes() == b"2.0"
    assert not [p for p in versioned.rglob("*") if p.is_symlink()]  # Pages refuses symlinks
    page = (versioned / "1.0/vgg16/block3_conv3/1/index.html").read_text()
    assert "https://vgg16-filter-atlas.github.io/1.0/vgg16/block3_conv3/1/" in page  # the cite box and BibTeX
    assert "always shows the latest" in page


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make browser, as root)")
def test_latest_and_unversioned_urls_reach_the_latest_version(versioned, browser):  # noqa: F811
    with _serving(versioned) as root:
        for url, lands in [("vgg16/block3_conv3/1/", "2.0/vgg16/block3_conv3/1/"),
                           ("latest/vgg16/block3_conv3/1/", "2.0/vgg16/block3_conv3/1/"),
                           ("", "2.0/"), ("latest/", "2.0/"),
                           ("method/#how-far-to-trust-a-picture", "2.0/method/#how-far-to-trust-a-picture"),
                           ("1.0/vgg16/block3_conv3/1/", "1.0/vgg16/block3_conv3/1/")]:
            page, errors = open_page(browser, root + url)
            page.wait_for_url(root + lands)
            assert page.locator("article h1").first.is_visible(), url
            assert not errors, (url, errors)
            page.close()
        page, _ = open_page(browser, root + "vgg16/block3_conv3/1/")
        page.wait_for_url(root + "2.0/vgg16/block3_conv3/1/")
        assert "/2.0/vgg16/block3_conv3/1/" in page.locator(".atlas-cite").inner_text()


def test_bad_versions_are_refused(built_site, tmp_path, monkeypatch):
    from generator.site.urls import site_version
    from generator.site.versions import deploy

    for bad in ("latest", "vgg16", "../1", "1/2", "", "1.0 beta"):
        with pytest.raises(AtlasError):
            deploy(built_site, tmp_path / "p", bad)
    monkeypatch.setenv("ATLAS_SITE_VERSION", "v 1")
    with pytest.raises(AtlasError):
        site_version()


def test_zenodo_metadata_agrees_with_citation_cff():
    import yaml

    from tests.conftest import ROOT

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    zenodo = json.loads((ROOT / ".zenodo.json").read_text())
    assert zenodo["title"] == cff["title"] and zenodo["license"] == cff["license"]
    assert zenodo["upload_type"] == "software" and zenodo["keywords"] == cff["keywords"]
    assert [c["name"] for c in zenodo["creators"]] == [a["name"] for a in cff["authors"]]
    assert any(r["identifier"] == cff["url"] for r in zenodo["related_identifiers"])


def test_bench_site_with_the_pictures_split_off(tmp_path, monkeypatch):
    """`atlas bench site --assets-url` on one layer: the pages' size against Pages' 1 GB, and the upload."""
    import dataclasses
    from argparse import Namespace
    from types import SimpleNamespace

    from generator.bench import site as bench_site

    loaded = bench_site._loaded
    monkeypatch.setattr(bench_site, "_loaded", lambda model: dataclasses.replace(
        loaded(model), layers=tuple(x for x in loaded(model).layers if x.name == "block1_conv1")))
    args = Namespace(backend=None, size=32, steps=4, keep=str(tmp_path / "kept"), assets_url="https://b.example/x/")
    name, text = bench_site.run(args, SimpleNamespace(name="vgg16"))
    assert name == "site-split-vgg16" and "64 filters" in text
    assert re.search(r"site for GitHub Pages \(HTML, search index, theme\) \| \*\*0\.0\d\d GB\*\*, under", text), text
    assert "| pictures left on the site | 0.0 MB |" in text and "fits GitHub Pages as it is" in text
    assert "(projected)" not in text  # every layer of the (patched) network measured: nothing to project
    assert re.search(r"pictures to upload \(site-assets/\) \| [\d.]+ MB in [\d,]+ files", text), text
