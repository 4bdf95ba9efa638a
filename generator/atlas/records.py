"""The atlas's records as values: a filter's JSON with one view merged in, a row of the layer table,
the layer table itself and the trust means it carries. Nothing here reads or writes a file (the store
does); the same views give the same bytes, whatever order they were finished in.
"""

from __future__ import annotations

import numpy as np

from generator.network.layers import Layer
from generator.render.config import RenderConfig
from generator.render.renderer import RenderedView
from generator.render.views import CHANNEL, VIEWS

LOSS_DEFINITION = "minus the view's objective (for the channel view: mean activation of the filter) at each step"


def _round(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_round(v) for v in value]
    return float(f"{float(value):.5g}")


def add_view(record: dict, model: str, layer: Layer, result: RenderedView, config: RenderConfig,
             files: list[str]) -> dict:
    """The filter record ``record`` (as read from its file, or empty) with ``result``'s view merged in,
    its pictures named by ``files``; a record made with other settings is started anew."""
    f = result.filter
    if record.get("config_hash") != config.hash:
        record = {}
    record.update({
        "model": model, "layer": layer.name, "filter": f, "config_hash": config.hash,
        "seed": config.seed, "method": config.method, "size": config.size, "steps": config.steps,
        "loss_definition": LOSS_DEFINITION,
    })
    numbers = {k: _round(v) for k, v in result.measures.items()}
    entry = {"precision": result.precision, "retried_float32": result.retried,
             "final_loss": _round(result.loss[-1]), **numbers}
    if result.view is CHANNEL:
        record.update({**entry, "dead": result.dead, "loss": _round(result.loss)})
    else:
        views = record.setdefault("views", {})
        views[result.view.name] = {**entry, "files": files, "loss": _round(result.loss)}
        if result.view.name == "diversity":
            views["diversity"]["dead"] = result.dead
        if result.view.name == "field":  # its pictures are a few receptive fields wide, not the atlas's size
            views["field"]["canvas"] = int(result.images[0].shape[0])
        views[result.view.name].update(result.about)  # the accentuation view: its start photograph
    return _canonical(record)


def _canonical(record: dict) -> dict:
    """A filter record's keys in one order whatever order its views were written in (several devices
    finish them in any order): the same views give the same bytes."""
    out = {key: record[key] for key in record if key != "views"}
    if "views" in record:
        out["views"] = {name: record["views"][name] for name in sorted(record["views"], key=list(VIEWS).index)}
    return out


def layer_row(record: dict, views: list[str]) -> dict:
    """A filter's row of ``layer.json``: its numbers and the ``views`` whose pictures are on disk."""
    return {
        "filter": record["filter"],
        "final_loss": record["final_loss"],
        "activation": record["activation"],
        "coverage": record.get("coverage"),
        "dead": record["dead"],
        "retried_float32": record.get("retried_float32", False),
        "views": views,
        **({"trust": record["trust"]["summary"]} if isinstance(record.get("trust"), dict) and "summary" in record["trust"] else {}),
    }


def layer_table(model: str, layer: Layer, rows: dict[int, dict], config: RenderConfig) -> dict:
    """``layer.json``: one row per filter, in filter order, and the layer's trust means."""
    return {
        "model": model,
        "layer": layer.name,
        "group": layer.group,
        "filters": layer.filters,
        "config_hash": config.hash,
        "rows": [rows[f] for f in sorted(rows)],
        **trust_means(list(rows.values())),
    }


def trust_means(rows: list[dict]) -> dict:
    """``{"trust": {score: mean over the filters that have it, "filters": count}}`` of a layer's rows
    (``atlas trust``); nothing where no row has trust scores."""
    scored = [r["trust"] for r in rows if r.get("trust")]
    if not scored:
        return {}
    means = {}
    for key in scored[0]:
        values = [s[key] for s in scored if s.get(key) is not None]
        means[key] = float(f"{np.mean(values):.4g}") if values else None
    return {"trust": {"filters": len(scored), **means}}
