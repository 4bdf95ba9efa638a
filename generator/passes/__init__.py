"""The passes floor: one module per command that computes and writes into the atlas: ``generate``
(pictures), ``examples`` (dataset examples), ``trust`` (how far to trust a picture), ``wiring`` (from
the weights) and ``merge`` (shards joined). It imports the cluster floor and below.
"""
