"""VGG16 Filter Atlas: render a feature visualization of every conv filter of a convnet and build the site.

The package is a house of floors; each imports only the floors below it (lazy imports too), and each
package's ``__init__`` names its public surface:

- ground modules (this folder): ``errors``, ``progress``, ``interrupt``, ``quiet``, ``paths`` (every
  file name of the data layout);
- ``network/``: the zoo, a user's Keras file, weights and their sha256, layers and receptive fields,
  the backend, how the cut network computes;
- ``render/`` (what a picture is and how it is made: views, config, parameterization, transforms,
  objectives, the compiled step, the layer renderer) and, beside it, ``evidence/`` (what real images
  say: image sets, labels and classes, the examples tracker, the trust probe and scores);
- ``atlas/``: the atlas on disk (atomic files, locks, records, the store);
- ``cluster/``: one job cut into shards (the split, jobs, the shard store, Slurm);
- ``passes/`` (one module per command that computes: generate, examples, trust, wiring, merge) and,
  beside it, ``site/`` (the stored atlas -> MkDocs pages);
- ``bench/``: the benchmarks; ``cli/``: the ``atlas`` command, which reads a model once and hands it down.

Keras is imported lazily, because the backend must be chosen before its first import.
"""
