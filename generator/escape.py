"""User-given strings on Markdown pages: shown as the text they are, never as Markdown or HTML.

Jinja's autoescape makes a string safe for HTML, but the pages are Markdown first: an image-set name
like ``[tiles](javascript:alert(1))`` would become a live link, ``*x*`` emphasis, ``|`` a table cell.
``markdown_text`` escapes HTML and then writes every character that Markdown (and its extensions
here: tables, attr_list, md_in_html, snippets) gives a meaning as a numeric character reference,
which Markdown passes through untouched and the browser shows as the character. Templates use it as
the ``text`` filter on every string a user gave (image-set name and licence, model name, class names).
"""

from __future__ import annotations

from markupsafe import Markup, escape

# Characters with a meaning in Markdown or its extensions; '&', '<', '>', '"' and "'" are escaped as HTML.
MARKDOWN_SPECIAL = "\\`*_{}[]()#+-.!|:~=^$%"


def markdown_text(value: object) -> Markup:
    """``value`` as literal text in Markdown that may sit inside HTML: one line, nothing interpreted."""
    text = " ".join(str(value).split())  # a newline could start a Markdown block (a heading, a list)
    return Markup("".join(f"&#{ord(ch)};" if ch in MARKDOWN_SPECIAL else str(escape(ch)) for ch in text))
