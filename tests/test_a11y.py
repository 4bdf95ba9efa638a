"""Accessibility: axe-core (the checker of browsers' developer tools, npm's ``axe-core``, installed by
``make axe`` into an ignored folder) injected into Debian's Chromium, on every page kind of the site,
in the light and the dark scheme, on a desktop and a phone. Serious and critical violations of WCAG 2
A and AA must stay at 0. Also checked without a browser: every picture has a text that names what it
shows, every plot a text alternative."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser

import pytest

from tests.conftest import ROOT
from tests.test_browser import CHROMIUM, browser, server  # noqa: F401 - shared fixtures

AXE = ROOT / ".axe" / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SCHEMES = ("light", "dark")
SCREENS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
# Every page kind: home, model, group, layer (its trust table included), filter (views, examples,
# classes, trust, wiring, cite), a user's network's filter (classes and votes), method, cite.
PAGES = ["", "vgg16/", "vgg16/block3/", "vgg16/block3_conv3/", "vgg16/block3_conv3/1/", "colours/red_detector/0/",
         "resnet50/conv3_block1_out/1/", "method/", "cite/"]
BAD = ("serious", "critical")


def run_axe(page, context: str = "document") -> list[dict]:
    """The serious and critical violations on ``page`` now, as {id, impact, help, targets}."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async ([ctx, tags]) => (await axe.run(ctx === 'document' ? document : ctx, "
                           "{runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})).violations",
                           [context, TAGS])
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "targets": [" ".join(map(str, n["target"])) for n in v["nodes"]][:5], "nodes": len(v["nodes"])}
            for v in result if v["impact"] in BAD]


def _page(browser, url, scheme, screen):  # noqa: F811
    page = browser.new_page(viewport=SCREENS[screen], color_scheme=scheme, reduced_motion="reduce")
    response = page.goto(url, wait_until="load")
    assert response.ok, url
    return page


def _every_state(page) -> list[tuple[str, list[dict]]]:
    """axe on the page as it opens, then with each further tab of every tab set shown."""
    found = [("", run_axe(page))]
    labels = page.locator(".tabbed-labels label")
    for i in range(1, labels.count()):
        label = labels.nth(i)
        if not label.is_visible():
            continue
        label.click()
        found.append((f" tab {label.inner_text()!r}", run_axe(page, ".tabbed-set")))
    return found


def search_for(page, query: str) -> None:
    """Types ``query`` into the search box until results show (the search index loads in a worker,
    and a query typed before it is ready is not run again)."""
    box = page.locator("input.md-search__input")
    for _ in range(20):
        box.fill("")
        box.press_sequentially(query)
        try:
            page.locator(".md-search-result__item").first.wait_for(timeout=1000)
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: the index is not ready yet
            continue
    raise AssertionError(f"the search for {query!r} shows no results")


needs_axe = pytest.mark.skipif(not AXE.is_file(), reason="axe-core is not installed: run `make axe` (npm)")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make browser, as root)")
@needs_axe
@pytest.mark.parametrize("screen", list(SCREENS))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_no_serious_accessibility_violations(browser, server, scheme, screen):  # noqa: F811
    report = []
    for url in PAGES:
        page = _page(browser, server + url, scheme, screen)
        for state, violations in _every_state(page):
            report += [f"/{url}{state}: {v['impact']} {v['id']} ({v['nodes']} nodes: {', '.join(v['targets'])}) "
                       f"{v['help']}" for v in violations]
        if os.environ.get("ATLAS_SCREENSHOTS"):
            name = (url.strip("/").replace("/", "-") or "home") + f"-{scheme}-{screen}.png"
            page.goto(server + url)
            page.screenshot(path=os.path.join(os.environ["ATLAS_SCREENSHOTS"], name), full_page=True)
        page.close()
    assert not report, "\n".join(report)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make browser, as root)")
@needs_axe
@pytest.mark.parametrize("screen", list(SCREENS))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_search_results_have_no_serious_violations(browser, server, scheme, screen):  # noqa: F811
    page = _page(browser, server + "vgg16/", scheme, screen)
    if screen == "phone":
        page.locator("label[for='__search']").first.click()
    search_for(page, "block3")
    violations = run_axe(page)
    assert not violations, violations
    page.close()


class _Pictures(HTMLParser):
    """Every <img> and <svg> of a page's article, with the text that stands in for it."""

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.svgs: list[dict] = []
        self._svg: dict | None = None
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "svg" and self._svg is None and "atlas-plot" in (attrs.get("class") or ""):
            self._svg = {**attrs, "title": ""}
        elif tag == "title" and self._svg is not None:
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag == "svg" and self._svg is not None:
            self.svgs.append(self._svg)
            self._svg = None

    def handle_data(self, data):
        if self._in_title and self._svg is not None:
            self._svg["title"] += data


def test_every_picture_names_its_filter_and_view(built_site):
    """Alt text of a filter's pictures names the model, layer, filter and view; every plot has a role,
    a name and a text alternative (its title and a description of what it plots)."""
    for url, names in [("vgg16/block3_conv3/1/", "block3_conv3:1"), ("vgg16/block3_conv3/", "block3_conv3:"),
                       ("vgg16/block3/", "block3_conv"), ("colours/red_detector/0/", "red_detector:0")]:
        parser = _Pictures()
        parser.feed((built_site / url / "index.html").read_text())
        atlas = [i for i in parser.images if "/assets/" not in (i.get("src") or "") and "logo" not in str(i)]
        assert atlas, url
        for image in atlas:
            alt = image.get("alt") or ""
            assert alt.strip(), (url, image)
            if image.get("src", "").endswith(".avif"):  # the page's own filter, in each view
                assert names in alt and " view" in alt, (url, image)
            if image.get("src", "").endswith(".thumb.webp"):  # any filter: model, layer:filter and view
                assert re.search(r"^\S.* \w+:\d+, channel view", alt), (url, image)
        for svg in parser.svgs:
            assert svg.get("role") == "img" and svg["title"].strip(), (url, svg)
            assert svg.get("aria-labelledby") or svg.get("aria-label"), (url, svg)
