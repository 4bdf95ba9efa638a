"""Which way a built site can be published, measured before ``make publish`` pushes it.

GitHub Pages takes a site of at most 1 GB, and git no file over 100 MB. A site over that publishes
one of two ways: its pictures in a bucket (``atlas site --assets-url URL``, the pages stay on Pages),
or each model as its own site (``atlas site --models NAME``), or both. ``python -m
generator.site.publish SITE`` says which, and exits 1 when the site as it is would be refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from generator.site.offsite import PICTURES

PAGES_LIMIT = 1_000_000_000  # GitHub Pages: a published site of at most 1 GB
FILE_LIMIT = 100_000_000  # git (and so Pages): no file over 100 MB
THEME = "assets"  # the theme's and our own stylesheets, scripts and icons, under site/assets/


@dataclass
class SiteSize:
    total: int = 0
    pictures: int = 0  # the atlas's pictures (what --assets-url moves out)
    models: dict[str, list[int]] = field(default_factory=dict)  # model folder -> [all bytes, picture bytes]
    too_large: list[tuple[str, int]] = field(default_factory=list)  # files over FILE_LIMIT

    @property
    def pages(self) -> int:
        """What stays on Pages once the pictures are in a bucket."""
        return self.total - self.pictures


def measure(site: Path) -> SiteSize:
    """The bytes of a built site (``mkdocs build``'s folder), its pictures and each model's share."""
    size = SiteSize()
    for path in site.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        n = path.stat().st_size
        top = path.relative_to(site).parts[0]
        picture = path.suffix.lower() in PICTURES and top != THEME
        size.total += n
        size.pictures += n if picture else 0
        entry = size.models.setdefault(top, [0, 0])
        entry[0] += n
        entry[1] += n if picture else 0
        if n > FILE_LIMIT:
            size.too_large.append((path.relative_to(site).as_posix(), n))
    # a model's folder holds pages below its own (its layers); Method, Cite and the theme do not
    size.models = {top: v for top, v in size.models.items()
                   if top != THEME and (site / top).is_dir() and any((site / top).glob("*/index.html"))}
    return size


def gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def advice(size: SiteSize) -> tuple[bool, list[str]]:
    """(whether GitHub Pages takes the site as it is, the lines that say which way to go)."""
    lines = [f"site: {gb(size.total)}, of which pictures {gb(size.pictures)} and pages {gb(size.pages)} "
             f"(GitHub Pages takes 1 GB)"]
    for name, n in size.too_large:
        lines.append(f"{name}: {gb(n)}, over git's 100 MB a file; it cannot be pushed to Pages")
    if size.total <= PAGES_LIMIT and not size.too_large:
        lines.append("fits GitHub Pages as it is")
        return True, lines
    if size.pages <= PAGES_LIMIT:
        lines.append(f"over by {gb(size.total - PAGES_LIMIT)}: rebuild with `atlas site --assets-url URL` (URL: a "
                     f"static bucket, S3, R2 or GCS), upload site-assets/ ({gb(size.pictures)}) there, then "
                     f"`make publish` again ({gb(size.pages)} of pages stay on Pages)")
    else:
        lines.append("its pages alone are over 1 GB: publish each model as its own site (`atlas site --models "
                     "NAME --assets-url URL`, one Pages site per model):")
    for name, (total, pictures) in sorted(size.models.items(), key=lambda kv: -kv[1][0]):
        verdict = "fits" if total - pictures <= PAGES_LIMIT else "too large even so"
        lines.append(f"  {name}: {gb(total)}, pages without pictures {gb(total - pictures)} ({verdict})")
    return False, lines


def main(argv: list[str]) -> int:
    site = Path(argv[0] if argv else "site")
    if not (site / "index.html").is_file():
        print(f"{site}: no built site here; run `mkdocs build --strict` first", file=sys.stderr)
        return 2
    ok, lines = advice(measure(site))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
