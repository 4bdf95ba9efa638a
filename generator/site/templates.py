"""The Jinja set-up for the pages (``templates/``) and the writer that renders them into a build.

Every page is Markdown that lands in HTML, so autoescape is on for all of them, an undefined name is an
error rather than an empty string, and user-given strings go through the ``text`` filter
(``escape.markdown_text``).
"""

from __future__ import annotations

from pathlib import Path

from generator import paths
from generator.site.escape import markdown_text

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def environment():
    """The Jinja environment every page is rendered with."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # everything lands in HTML, Markdown pages included
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["text"] = markdown_text  # every user-given string: literal text, not Markdown
    return env


class PageWriter:
    """Renders templates into the build's folder (``root``) and counts the pages it wrote."""

    def __init__(self, root: Path) -> None:
        self.env = environment()
        self.root = root
        self.pages = 0

    def write_page(self, url: str, template: str, **context) -> None:
        """The page at ``url`` (its Markdown source under ``root``)."""
        text = self.env.get_template(template).render(**context)
        target = self.root / paths.source_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        self.pages += 1

    def write_snippet(self, name: str, template: str, **context) -> None:
        """A file that a hand-written page includes (``root/name``): not a page of its own."""
        (self.root / name).write_text(self.env.get_template(template).render(**context))
