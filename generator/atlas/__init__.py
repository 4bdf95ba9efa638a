"""The atlas floor: the atlas on disk. Files written whole or not at all and JSON read back
(``files``), the locks that keep one writer per model folder or one job's shards side by side
(``locks``), the records a filter's JSON and a layer table hold (``records``) and the store of one
model's atlas: its manifest, what is done, and the one-network rule (``store``). It imports the render
and network floors and the ground, nothing above.
"""

from generator.atlas.files import (
    atomic_write_bytes,
    atomic_write_json,
    png_bytes,
    read_json,
    read_json_or_none,
)
from generator.atlas.locks import AtlasLock, ManifestLock, ShardLock, lock_holder
from generator.atlas.records import add_view, layer_row, layer_table, trust_means
from generator.atlas.store import (
    AtlasStore,
    atlas_models,
    package_versions,
    weights_name,
)

__all__ = [
    "AtlasLock",
    "AtlasStore",
    "ManifestLock",
    "ShardLock",
    "add_view",
    "atlas_models",
    "atomic_write_bytes",
    "atomic_write_json",
    "layer_row",
    "layer_table",
    "lock_holder",
    "package_versions",
    "png_bytes",
    "read_json",
    "read_json_or_none",
    "trust_means",
    "weights_name",
]
