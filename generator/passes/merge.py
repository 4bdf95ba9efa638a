"""``atlas merge``: join the finished shards of a job into the atlas one machine would have made.

It holds the model folder alone, checks that every shard of the job finished with the same settings and
weights, rebuilds the layer tables and the manifest, merges the examples states
(``evidence.tracker.merge_tracker_states``) and writes their files, and removes the records. Until then
``atlas site`` refuses the atlas (``cluster.shard_store.check_merged``).

It starts no backend and reads no model file: the records hold the weights' name and sha256 and, for a
user's network, the description the manifest stores (no path, no custom code); a zoo network's labelled
shards name the classifier they ran (its full-top file's name and sha256), so the merge writes their
accuracy without the file. So a merge runs no code named inside the atlas folder, and needs neither the
weights nor the model file where it runs; a record that names a file anyway (``custom_objects``, a
path) is refused, not followed.

``--forget-shards`` gives up the jobs some of whose shards never finished (``cluster.forget``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from generator.atlas.files import read_json
from generator.atlas.store import AtlasStore
from generator.cluster.forget import forget_job, unfinished_jobs
from generator.cluster.jobs import COMMANDS, ExamplesJob
from generator.cluster.shard_store import (
    describe_missing,
    job_progress,
    load_state,
    read_records,
    remove_job_files,
)
from generator.cluster.split import expand_ranges, ranges
from generator.errors import AtlasError
from generator.network.layers import find_layer, model_layers
from generator.network.modelfile import spec_from_manifest
from generator.network.models import LoadedModel
from generator.network.zoo import MODELS
from generator.render.config import RenderConfig
from generator.render.views import VIEWS, views_of


def _one_job(store: AtlasStore, command: str, records: list[dict]) -> dict:
    """The records of one complete job of ``command``, checked; returns one of them."""
    jobs = {(r["job"], r["count"]) for r in records}
    forget = f"`atlas merge --out {store.paths.root} --forget-shards`"
    if len(jobs) > 1:
        counts = ", ".join(f"{count} ways" for _, count in sorted(jobs, key=lambda j: j[1]))
        raise AtlasError(f"{store.paths.model_dir} holds shards of {len(jobs)} different {command} jobs ({counts}); "
                         f"finish the one to keep, then {forget} drops the unfinished ones")
    count = records[0]["count"]
    finished, started, missing = job_progress(records, count)
    if started or missing:
        raise AtlasError(f"{store.paths.model_dir}: {describe_missing(command, count, started, missing)}; run them "
                         f"(--shard K/{count}, or the same atlas slurm command again) and merge again, or give the "
                         f"job up: {forget}")
    return records[0]


# Keys that would name code or a file to read: a record holding one was not written by this release's shards.
NAMING_FILES = ("custom_objects", "model_file", "model_path", "path")


def check_records(records: list[tuple[Path, dict]]) -> None:
    """Refuse, in one line, a record that names a file to run or read: the merge takes nothing to run
    from the atlas folder (anyone who can write to a shared folder could name their own code there)."""
    for path, record in records:
        user = record.get("user_model") if isinstance(record.get("user_model"), dict) else {}
        named = [(k, record[k]) for k in NAMING_FILES if k in record]
        named += [(k, user[k]) for k in NAMING_FILES if k in user]
        top = record.get("classifier")
        for key, file in (("user_model.file", user.get("file", "")),
                          ("classifier.file", top.get("file", "") if isinstance(top, dict) else "")):
            if "/" in str(file) or "\\" in str(file):
                named.append((key, file))
        if named:
            key, value = named[0]
            raise AtlasError(f"{path}: names a file ({key} {str(value)!r}) that atlas merge was not given, and the "
                             "merge runs nothing the atlas folder names; remove this record and run its shard again")


def _sharded_models(out: str) -> list[str]:
    """The zoo's networks, then every other model folder of ``out`` that holds shard records."""
    root = Path(out)
    others = sorted(p.parent.name for p in root.glob("*/.shards") if p.parent.name not in MODELS and p.is_dir())
    return [*MODELS, *others]


def merge(out: str, forget: bool = False) -> list[str]:
    """``atlas merge``: join the finished shards of every model under ``out``; one line per model. With
    ``forget``, the jobs not every shard of which finished are given up first."""
    lines = []
    for model in _sharded_models(out):
        store = AtlasStore(out, model)
        if not read_records(store):
            continue
        with store.lock():
            check_records(read_records(store))
            records = [r for _, r in read_records(store)]
            forgotten = _forget(store, records) if forget else []
            records = [r for _, r in read_records(store)]
            jobs = {command: _one_job(store, command, [r for r in records if r["command"] == command])
                    for command in COMMANDS if any(r["command"] == command for r in records)}
            done = _merge_jobs(store, model, jobs) if jobs else []
        lines.append(f"{store.paths.model_dir}: " + "; ".join(forgotten + (["merged " + " and ".join(done)] if done
                                                                           else [])))
    return lines


def _merge_jobs(store: AtlasStore, model: str, jobs: dict) -> list[str]:
    shas = {r["weights"]["sha256"] for r in jobs.values()}
    if len(shas) > 1:
        raise AtlasError(f"{store.paths.model_dir}: its generate and examples shards were made with other "
                         "weights; run one job's shards again with the other's weights (atlas generate|examples "
                         "--weights W --shard K/N)")
    loaded = _network(model, jobs)
    store.remove_stale_temporaries()
    done = []
    if "generate" in jobs:
        done.append(_merge_generate(store, loaded, jobs["generate"]))
    if "examples" in jobs:
        done.append(_merge_examples(store, loaded, jobs["examples"]))
    for command, record in jobs.items():
        remove_job_files(store.paths, command, record["count"])
    return done


def _forget(store: AtlasStore, records: list[dict]) -> list[str]:
    """Give up the unfinished jobs: their records, states and locks go; what their shards rendered stays,
    and a generate job's layers are listed in their tables (as an interrupted whole run leaves them)."""
    lines = []
    for (command, _, count), group in unfinished_jobs(records).items():
        if command == "generate":
            _list_rendered(store, group)
        forget_job(store.paths, group)
        finished, _, _ = job_progress(group, count)
        kept = f"; the filters of shards {ranges(finished)} are kept" if command == "generate" and finished else ""
        lines.append(f"forgot the unfinished {command} job split {count} ways{kept}")
    return lines


def _list_rendered(store: AtlasStore, group: list[dict]) -> None:
    """The layer tables of a given-up generate job's layers, from the files its shards wrote, when the
    atlas holds the job's settings."""
    config = RenderConfig(**group[0]["config"])
    manifest = read_json(store.paths.manifest, "manifest") if store.paths.manifest.exists() else {}
    if manifest.get("config_hash") != config.hash:
        return
    loaded = _network(store.model, {"generate": group[0]})
    for name in _job_work(store, group[0], loaded.layers):
        store.refresh_layer(find_layer(name, loaded.spec), config)
    store.write_manifest(config, loaded)


def _network(model: str, jobs: dict) -> LoadedModel:
    """The network as the shards describe it, for the manifest: its spec and layers (a user's network:
    from the records' description of its file), the weights' name and sha256. No backend is started and
    no file is read: the shards' records say everything the manifest needs."""
    record = jobs.get("generate") or jobs["examples"]
    if model in MODELS:
        spec = MODELS[model]
    elif "user_model" in record:
        spec = spec_from_manifest(model, {"user_model": record["user_model"]})
    else:
        raise AtlasError(f"{model}: its shards do not describe the network they ran (made by an earlier release); "
                         "run them again, then merge")
    weights = record["weights"]
    return LoadedModel(None, spec, weights["name"], weights["sha256"], model_layers(spec))


def _merge_generate(store: AtlasStore, loaded, record: dict) -> str:
    config = RenderConfig(**record["config"])
    manifest = read_json(store.paths.manifest, "manifest") if store.paths.manifest.exists() else {}
    if manifest.get("config_hash") != config.hash:
        raise AtlasError(f"{store.paths.manifest}: the atlas holds other settings (config {manifest.get('config_hash')}) "
                         f"than its generate shards ({config.hash}); run the shards again or remove "
                         f"{store.paths.shards_dir}")
    work = {name: expand_ranges(spec) for name, spec in _job_work(store, record, loaded.layers).items()}
    views = [VIEWS[name] for name in record["share"]["views"]]
    views_done = 0
    for name, filters in work.items():
        layer = find_layer(name, loaded.spec)
        records = store.records(layer, config.hash)
        own = views_of(views, layer, config.size, loaded.spec.input_size)
        for f in filters:
            done = store.done_views(layer, records[f]) if f in records else []
            # the accentuation view is made only for filters with dataset examples to start from
            lost = [v.name for v in own if v.name not in done
                    and not (v.from_photo and not store.paths.examples_json(name, f).exists())]
            if lost:
                raise AtlasError(f"{store.paths.layer_dir(name)}: {name}:{f} ({', '.join(lost)}) is missing although "
                                 f"its shard finished; run that shard again (--shard K/{record['count']}) and merge")
            views_done += sum(v.name in done for v in own)
        store.refresh_layer(layer, config)
    store.write_manifest(config, loaded)
    return f"the generate job of {record['count']} shards ({views_done} filter views)"


def _job_work(store: AtlasStore, record: dict, table) -> dict[str, str]:
    """The whole job's work: the union of the shards' parts (every record holds its own)."""
    work: dict[str, list[int]] = {}
    for _, r in read_records(store):
        if r["command"] == "generate" and r["job"] == record["job"]:
            for name, spec in r["share"]["work"].items():
                work.setdefault(name, []).extend(expand_ranges(spec))
    names = [layer.name for layer in table if layer.name in work]
    return {name: ranges(work[name]) for name in names}


def _merge_examples(store: AtlasStore, loaded, record: dict) -> str:
    from concurrent.futures import ThreadPoolExecutor

    from generator.evidence.imagesets import list_images
    from generator.evidence.tracker import merge_tracker_states
    from generator.passes.examples_config import ExamplesConfig
    from generator.passes.examples_files import write_examples

    settings = record["examples"]
    images = list_images(settings["images_root"])
    labels = None
    if "labels" in settings:
        from generator.evidence.labels import LabelSet

        given = settings["labels"]
        labels = LabelSet(**{**given, "classes": tuple(given["classes"]), "index": tuple(given["index"])})
    config = ExamplesConfig(model=store.model, weights_sha256=record["weights"]["sha256"], size=settings["size"],
                            top=settings["top"], images=images, name=settings["name"], license=settings["license"],
                            precision=settings["precision"], backend=settings["backend"], labels=labels)
    layers = [find_layer(name, loaded.spec) for name in settings["layers"]]
    job = ExamplesJob(config, tuple(layers), record["count"])
    if job.id != record["job"]:
        raise AtlasError(f"{settings['images_root']}: the image folder changed since the examples shards ran "
                         "(its list of images differs); run them again (atlas examples --shard K/N)")
    states, skips = [], []
    for _, r in sorted(read_records(store), key=lambda pr: pr[1]["shard"]):
        if r["command"] == "examples":
            states.append(load_state(store.paths.shard_file("examples", r["shard"], r["count"], ".npz"), len(layers)))
            skips += [(int(i), str(reason)) for i, reason in r["result"]["skips"]]
    state = merge_tracker_states(states)
    loaded = _classifier(store, loaded, record, len(state) > len(layers) and "pred" in state[-1])
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        write_examples(store, loaded, layers, state, config, skips, pool,
                       classify=labels is not None and loaded.spec.head is not None)
    store.paths.examples_state.unlink(missing_ok=True)
    return f"the examples job of {record['count']} shards ({len(images.files)} images)"


def _classifier(store: AtlasStore, loaded: LoadedModel, record: dict, predicted: bool) -> LoadedModel:
    """The network the examples shards classified with: a zoo network built without its top gets the
    classifier their records name (its file's name and sha256: the accuracy's source, for the manifest);
    a user's network has its own (its description's head). ``predicted``: the shards' states hold the
    classifier's predictions."""
    top = record.get("classifier")
    if not loaded.spec.zoo or (top is None and not predicted):
        return loaded
    if top is not None and not (isinstance(top, dict) and isinstance(top.get("file"), str)
                                and isinstance(top.get("sha256"), str)):
        raise AtlasError(f"{store.paths.shards_dir}: an examples shard's record names its classifier as {str(top)[:80]!r}, not "
                         "by its weights file and sha256; run the shards again, then merge")
    if top is None:
        raise AtlasError(f"{store.paths.shards_dir}: its examples shards classified the images but their records do "
                         "not name the classifier's weights (made by an earlier release); run them again, then merge")
    if not predicted:
        raise AtlasError(f"{store.paths.shards_dir}: its examples shards name a classifier ({top['file']}) but hold "
                         "none of its predictions; run them again, then merge")
    return replace(loaded, spec=loaded.spec.classifier, classifier={"file": top["file"], "sha256": top["sha256"]})
