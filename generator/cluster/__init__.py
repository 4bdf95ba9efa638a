"""The cluster floor: one atlas job cut into N parts. The K/N split and its cost model, job identity,
the shard store and its records (``shards``), and one scheduler per module (``slurm``). It imports the
atlas floor and below.
"""
