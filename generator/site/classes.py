"""Classes and accuracy as the pages show them: pure functions from the stored records (the examples'
``classes``, ``accuracy.json``) to display rows. An ImageNet synset id is shown with its name."""

from __future__ import annotations

from pathlib import Path

from generator.atlas.files import read_json


def class_display(name: str, short: bool = False) -> str:
    """A class as pages name it: an ImageNet synset id with its name (``tench (n01440764)``, or
    ``tench`` where space is short), any other class as it is."""
    from generator.evidence.labels import SYNSET, imagenet_classes

    if SYNSET.match(name):
        names = {c.synset: c.name for c in imagenet_classes()}
        if name in names:
            return names[name] if short else f"{names[name]} ({name})"
    return name


def top_class(examples_json: Path) -> dict | None:
    """The first class of a filter's top examples, or None (no labels)."""
    if not examples_json.exists():
        return None
    rows = (read_json(examples_json, "dataset examples").get("classes") or {}).get("top") or []
    return rows[0] if rows else None


def filter_classes(record: dict | None) -> dict | None:
    """The classes row of a filter page: its top examples' classes against the image set, its votes."""
    if not record:
        return None

    def vote(entry: dict) -> dict:
        return {"name": class_display(entry["class"]), "value": f"{entry['value']:+.3g}"}

    rows = [{"name": class_display(r["class"]), "count": r["count"], "share": f"{r['share']:.0%}",
             "base": f"{r['base']:.1%}", "lift": f"{r['lift']:.2g}×" if r.get("lift") else "–",
             "p": f"{r['p']:.2g}"} for r in record.get("top", [])]
    return {"examples": record.get("examples", 0), "labelled": record.get("labelled", 0), "rows": rows,
            "votes": [vote(v) for v in record.get("votes", []) if v["value"] > 0],
            "against": [vote(v) for v in record.get("against", [])],
            "has_votes": "votes" in record}


def accuracy_summary(data: dict, labels: dict, shown: int = 5) -> dict:
    """The model page's accuracy: overall, and the worst and best classes by top-1 (ties: more images first)."""
    per_class = [{"name": class_display(name), "images": v["images"], "top1": v["top1"], "top5": v["top5"]}
                 for name, v in (data.get("per_class") or {}).items()]
    ranked = sorted(per_class, key=lambda r: (r["top1"], -r["images"], r["name"]))
    worst = ranked[:shown]
    best = [r for r in sorted(per_class, key=lambda r: (-r["top1"], -r["images"], r["name"])) if r not in worst][:shown]
    fmt = lambda v: "–" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    for row in worst + best:
        row["top1_text"], row["top5_text"] = fmt(row["top1"]), fmt(row["top5"])
    return {"images": data.get("images", 0), "top1": fmt(data.get("top1")), "top5": fmt(data.get("top5")),
            "top_k": data.get("top_k", 5), "classes": len(data.get("classes") or []), "order": data.get("order", ""),
            "source": labels.get("source", ""), "worst": worst, "best": best,
            "reference": {k: fmt(v) for k, v in data["reference"].items() if k != "of"} if data.get("reference") else None}
