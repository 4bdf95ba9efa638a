"""The Jinja set-up for the pages (``templates/``).

Every page is Markdown that lands in HTML, so autoescape is on for all of them, an undefined name is an
error rather than an empty string, and user-given strings go through the ``text`` filter
(``escape.markdown_text``).
"""

from __future__ import annotations

from pathlib import Path

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

