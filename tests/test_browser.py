"""The built site as a person sees it: served on 127.0.0.1, driven in Debian's headless Chromium; and the
site of a hostile atlas, where no user-given string runs a script."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading

import pytest

from tests.hostile import HOSTILE_LICENSE, HOSTILE_NAME
from tests.test_site import hostile_site  # noqa: F401 - shared fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make browser, as root)"),
]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request in the test log
        pass


@contextlib.contextmanager
def _serving(folder, port: int = 0):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(built_site):
    with _serving(built_site) as url:
        yield url


@pytest.fixture(scope="module")
def hostile_server(hostile_site):  # noqa: F811
    with _serving(hostile_site) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = page.goto(url, wait_until="load")
    assert response.ok, url
    return page, errors


def _all_images_loaded(page, selector):
    """Natural widths of the visible images matching ``selector``, once they have loaded (lazy ones
    load when scrolled to; those in a closed tab are not visible)."""
    visible = f"[...document.querySelectorAll('{selector}')].filter(i => i.offsetParent !== null)"
    page.evaluate(f"() => {visible}.forEach(i => i.scrollIntoView())")
    page.wait_for_function(f"() => {visible}.every(i => i.complete)")
    return page.evaluate(f"() => {visible}.map(i => i.naturalWidth)")


def test_layer_grid_images_load_and_links_resolve(browser, server):
    page, errors = open_page(browser, server + "vgg16/block3_conv3/")
    widths = _all_images_loaded(page, ".atlas-grid img")
    assert len(widths) >= 3 and all(w > 0 for w in widths), widths
    page.get_by_text("With the strongest dataset example").click()
    assert page.locator(".atlas-pairs img").first.is_visible()
    links = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
    local = sorted({link.split("#")[0] for link in links if link.startswith(server)})
    assert len(local) > 10
    for link in local:
        assert page.request.get(link).ok, link
    assert not errors, errors


def test_filter_page_shows_views_evidence_and_citation(browser, server):
    page, errors = open_page(browser, server + "vgg16/block3_conv3/1/")
    assert page.evaluate("() => document.querySelector('.atlas-zoom img').naturalWidth") > 0
    assert page.locator("svg.atlas-plot polyline").first.is_visible()
    page.get_by_text("Diversity", exact=True).first.click()
    diversity = page.locator(".tabbed-block:visible .atlas-views img")
    assert diversity.count() == 4 and diversity.first.is_visible()
    crops = page.locator(".atlas-crops [role=img]")  # each a part of the sprite, named by its title
    assert crops.count() == 8 and crops.first.is_visible()
    assert crops.first.get_attribute("title").startswith("dataset example")
    sprites = page.evaluate("() => [...document.querySelectorAll('.atlas-crops [role=img]')]"
                            ".map(i => getComputedStyle(i).backgroundImage)")
    assert len(set(sprites)) == 1 and sprites[0].startswith('url("')  # one sprite for both rows
    loaded = "u => new Promise(ok => { const i = new Image(); i.onload = () => ok(i.naturalWidth); i.src = u; })"
    assert page.evaluate(loaded, sprites[0][5:-2]) > 0
    assert page.locator("svg.atlas-plot .mark").first.is_visible()
    assert page.get_by_text("Strongest positive inputs").is_visible()
    assert page.get_by_text("VGG16 block3_conv3:1", exact=True).first.is_visible()
    assert page.locator(".atlas-cite").is_visible()
    page.locator(".atlas-zoom").click()  # the lightbox opens on click, without JavaScript of ours
    assert page.locator("#zoom img").is_visible()
    if os.environ.get("ATLAS_SCREENSHOTS"):
        page.goto(server + "vgg16/block3_conv3/1/")
        page.screenshot(path=os.path.join(os.environ["ATLAS_SCREENSHOTS"], "filter.png"), full_page=True)
    assert not errors, errors


def test_resnet_pages_and_landing(browser, server):
    page, errors = open_page(browser, server)
    assert page.get_by_role("link", name="ResNet50").first.is_visible()
    page, errors2 = open_page(browser, server + "resnet50/conv3_block1_out/1/")
    assert page.get_by_text("ResNet50 conv3_block1_out:1", exact=True).first.is_visible()
    assert not errors + errors2


SCHEMES = "[...document.querySelectorAll('[href],[src],[action]')].map(e => e.getAttribute('href') || " \
          "e.getAttribute('src') || e.getAttribute('action')).filter(u => /^\\s*(javascript|data|vbscript):/i.test(u))"


def test_hostile_strings_run_no_script_and_show_as_text(browser, hostile_server):
    """Every page that shows a user-given string: no dialog opens, window.__pwned stays undefined (the
    strings try to set it), no javascript: link, no handler attribute; the strings read as they are."""
    urls = ["", "method/", "vgg16/", "vgg16/block1_conv1/", "vgg16/block2_conv1/",
            *[f"vgg16/{layer}/{f}/" for layer in ("block1_conv1", "block2_conv1") for f in range(8)]]
    for url in urls:
        page, errors = open_page(browser, hostile_server + url)
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")  # lazy crops load (onerror would fire)
        page.wait_for_timeout(200)
        for tab in page.locator(".tabbed-labels label").all():  # the layer page's second tab
            tab.click()
        assert page.evaluate("() => typeof window.__pwned") == "undefined", url
        assert page.evaluate(f"() => {SCHEMES}") == [], url
        assert page.evaluate("() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes])"
                             ".filter(a => a.name.startsWith('on')).length") == 0, url
        assert not dialogs and not errors, (url, dialogs, errors)
        if url.startswith("vgg16/block2_conv1/") and url != "vgg16/block2_conv1/":
            text = " ".join(page.inner_text("article").split())
            assert " ".join(f"of {HOSTILE_NAME} ({HOSTILE_LICENSE})".split()) in text, url
        page.close()


def test_a_users_network_in_the_browser(browser, server):
    page, errors = open_page(browser, server + "colours/")
    assert page.get_by_role("heading", name="How well it classifies").is_visible()
    assert page.get_by_role("columnheader", name="Worst classes").is_visible()
    page, errors2 = open_page(browser, server + "colours/red_detector/0/")
    table = page.locator("table", has_text="Top examples")
    assert table.is_visible() and "red" in table.inner_text()
    assert page.get_by_text("It votes for").is_visible()
    page, errors3 = open_page(browser, server + "colours/sep3/")
    page.get_by_text("With the strongest dataset example").click()
    captions = page.locator(".atlas-pairs .atlas-caption")
    assert captions.count() == 3 and captions.first.is_visible()
    assert captions.first.inner_text() in ("red", "green", "blue")
    if os.environ.get("ATLAS_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["ATLAS_SCREENSHOTS"], "user-layer.png"), full_page=True)
    assert not errors + errors2 + errors3


def _column(page, index):
    return page.eval_on_selector_all(".atlas-sortable tbody tr",
                                     f"rows => rows.map(r => r.cells[{index}].dataset.sort)")


def _sorting_works(page):
    """The table starts with the least trustworthy pictures (two-image prediction, ascending); a
    column's header sorts by it, a second click the other way."""
    table = page.locator(".atlas-sortable table")
    table.scroll_into_view_if_needed()
    assert table.is_visible()
    two = [float(v) for v in _column(page, 1)]
    assert len(two) == 3 and two == sorted(two)
    header = page.locator(".atlas-sortable th button").nth(4)
    assert header.inner_text().startswith("Beyond nature")
    header.click()
    beyond = [float(v) for v in _column(page, 4)]
    assert beyond == sorted(beyond)
    assert page.locator(".atlas-sortable th", has_text="Beyond nature").get_attribute("aria-sort") == "ascending"
    header.click()
    assert [float(v) for v in _column(page, 4)] == sorted(beyond, reverse=True)
    page.locator(".atlas-sortable th button").first.click()
    assert _column(page, 0) == ["0", "1", "2"]


def test_trust_table_sorts_and_finds_the_least_trustworthy(browser, server):
    page, errors = open_page(browser, server + "vgg16/block3_conv3/")
    _sorting_works(page)
    widths = _all_images_loaded(page, ".atlas-sortable img")
    assert len(widths) == 3 and all(w > 0 for w in widths)
    first = page.locator(".atlas-sortable tbody tr a").first
    first.click()  # the weakest picture's own page, with its Trust row
    page.wait_for_url("**/vgg16/block3_conv3/*/")
    assert page.get_by_role("heading", name="How far to trust this picture").is_visible()
    assert page.locator("svg.atlas-path polyline.curve").is_visible()
    assert page.locator("svg.atlas-path polyline.baseline").is_visible()
    assert page.get_by_text("Reading:").first.is_visible()
    page.get_by_role("link", name="What each check shows, and what it does not").click()
    page.wait_for_url("**/method/#how-far-to-trust-a-picture")
    assert page.get_by_role("heading", name="How far to trust a picture").is_visible()
    # reached by Material's instant navigation (no full reload), the table still sorts
    page.locator("article a[href$='vgg16/block3_conv3/']").last.click()  # in the table of layer means
    page.wait_for_url("**/vgg16/block3_conv3/")
    _sorting_works(page)
    if os.environ.get("ATLAS_SCREENSHOTS"):
        page.locator(".atlas-sortable").screenshot(path=os.path.join(os.environ["ATLAS_SCREENSHOTS"], "trust-table.png"))
    assert not errors, errors
