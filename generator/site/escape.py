"""User-given strings on Markdown pages: shown as the text they are, never as Markdown or HTML.

Jinja's autoescape makes a string safe for HTML, but the pages are Markdown first: an image-set name
like ``[tiles](javascript:alert(1))`` would become a live link, ``*x*`` emphasis, ``|`` a table cell.
``markdown_text`` escapes HTML and then writes every character that Markdown (and its extensions
here: tables, attr_list, md_in_html, snippets) gives a meaning as a numeric character reference,
which Markdown passes through untouched and the browser shows as the character. Templates use it as
the ``text`` filter on every string a user gave (image-set name and licence, file names, weights file
name, model name, class names); where such a string is shown as code it goes in ``<code>`` with the
same filter, never in a Markdown code span (which shows character references as they are written).
A code block (the BibTeX) is the exception: Markdown escapes it itself, so ``fenced_code`` puts the
text in as it is, with ``bibtex_text`` escaping what BibTeX would read.
"""

from __future__ import annotations

from markupsafe import Markup, escape

# Characters with a meaning in Markdown or its extensions; '&', '<', '>', '"' and "'" are escaped as HTML.
MARKDOWN_SPECIAL = "\\`*_{}[]()#+-.!|:~=^$%"


def markdown_text(value: object) -> Markup:
    """``value`` as literal text in Markdown that may sit inside HTML: one line, nothing interpreted."""
    text = " ".join(str(value).split())  # a newline could start a Markdown block (a heading, a list)
    return Markup("".join(f"&#{ord(ch)};" if ch in MARKDOWN_SPECIAL else str(escape(ch)) for ch in text))


# BibTeX (LaTeX) gives these a meaning in a field; escaped, each prints as itself.
BIBTEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "#": r"\#",
                  "_": r"\_", "$": r"\$", "^": r"\^{}", "~": r"\~{}"}


def bibtex_text(value: object) -> str:
    """``value`` as literal text in a BibTeX field: one line, LaTeX's special characters escaped, so a
    brace cannot end the field and ``&`` is an ampersand, not a table column."""
    return "".join(BIBTEX_SPECIAL.get(ch, ch) for ch in " ".join(str(value).split()))


def fenced_code(text: str, language: str = "") -> Markup:
    """``text`` as a fenced code block. Markdown escapes HTML inside the block itself, so the text goes
    in as it is (HTML-escaping it would show ``&amp;``); the fence is longer than any run of backticks
    in it, so no line of it can close the block."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return Markup(f"{fence}{language}\n{text}\n{fence}")
