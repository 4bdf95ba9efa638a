"""The cluster floor: one atlas job cut into N parts. The K/N split and its cost model (``split``), job
identity (``jobs``), the shard store, its records and a job's progress (``shard_store``), and one
scheduler per module (``slurm``). It imports the atlas floor and below.
"""

from generator.cluster.jobs import (
    COMMANDS,
    ExamplesJob,
    GenerateJob,
    examples_units,
    generate_units,
)
from generator.cluster.shard_store import (
    ShardPaths,
    ShardStore,
    check_merged,
    command_line,
    describe_missing,
    finished_shards,
    job_progress,
    load_state,
    read_records,
    remove_job_files,
    save_state,
)
from generator.cluster.split import (
    EXAMPLES_GRAIN,
    PIXEL_COST,
    Shard,
    Split,
    expand_ranges,
    image_range,
    parse_shard,
    picture_cost,
    ranges,
    split_generate,
)

__all__ = [
    "COMMANDS",
    "EXAMPLES_GRAIN",
    "PIXEL_COST",
    "ExamplesJob",
    "GenerateJob",
    "Shard",
    "ShardPaths",
    "ShardStore",
    "Split",
    "check_merged",
    "command_line",
    "describe_missing",
    "examples_units",
    "expand_ranges",
    "finished_shards",
    "generate_units",
    "image_range",
    "job_progress",
    "load_state",
    "parse_shard",
    "picture_cost",
    "ranges",
    "read_records",
    "remove_job_files",
    "save_state",
    "split_generate",
]
