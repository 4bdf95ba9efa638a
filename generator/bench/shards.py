"""``atlas bench shards``: how evenly ``--shard K/N`` deals a whole atlas out, from the cost model
alone (no rendering): the slowest shard against the mean, for VGG16 and ResNet50 and N = 2, 8, 64.

For VGG16 the split is also timed with the per-layer throughput one H100 measured (the GPU check,
BENCHMARKS.md), beside the split a FLOP cost model would make: what the cost model is for.
"""

from __future__ import annotations

# filters/s at 256 steps, 128 px, bf16, per VGG16 layer on one H100 (`make bench-gpu`, 2026-11-28)
H100_FILTERS_PER_S = {
    "block1_conv1": 30.0, "block1_conv2": 38.7, "block2_conv1": 17.4, "block2_conv2": 17.9, "block3_conv1": 13.6,
    "block3_conv2": 12.9, "block3_conv3": 13.9, "block4_conv1": 12.4, "block4_conv2": 12.5, "block4_conv3": 11.9,
    "block5_conv1": 11.1, "block5_conv2": 11.5, "block5_conv3": 11.8,
}
COUNTS = (2, 8, 64)


def flop_cost(layer, size: int, table=()) -> float:
    """The cost model we do not use: forward FLOP of the network cut at the layer."""
    return layer.forward_flop(size)


def measured_spread(split) -> float:
    """The slowest shard against the mean in H100 seconds (channel views; the contrast reference left out)."""
    seconds = [sum(len(filters) / H100_FILTERS_PER_S[layer.name] for layer, filters in share) for share in split.shares]
    return max(seconds) / (sum(seconds) / len(seconds))


def run(args, network) -> tuple[str, str]:
    from generator.cluster.split import PIXEL_COST, split_generate
    from generator.network.layers import model_layers
    from generator.render.config import RenderConfig
    from generator.render.views import CHANNEL, DIVERSITY, NEGATIVE, NEURON

    size = args.size or 128
    rows = []
    for model in ("vgg16", "resnet50"):
        work = [(layer, list(range(layer.filters))) for layer in model_layers(model)]
        config = RenderConfig(model=model, size=size)
        # the four views that every layer has (the field view adds small pictures of the first layers only)
        for label, views in (("channel", [CHANNEL]), ("all 4 views", [CHANNEL, NEURON, NEGATIVE, DIVERSITY])):
            splits = [split_generate(work, views, config, n) for n in COUNTS]
            cells = [f"{s.spread:.4f} ({max(len(share) for share in s.shares)})" for s in splits]
            rows.append(f"| {model} ({sum(len(f) for _, f in work):,} filters) | {label} | " + " | ".join(cells) + " |")
    vgg = [(layer, list(range(layer.filters))) for layer in model_layers("vgg16")]
    config = RenderConfig(size=128)
    ours = [measured_spread(split_generate(vgg, [CHANNEL], config, n)) for n in COUNTS]
    flop = [measured_spread(split_generate(vgg, [CHANNEL], config, n, cost=flop_cost)) for n in COUNTS]
    text = (
        f"### Shards: how evenly `--shard K/N` splits a whole atlas ({size} px)\n\n"
        "Computed from the cost model, no rendering (`generator/cluster/split.py`); the same on every machine. "
        "Command: `atlas bench shards`.\n\n"
        "Each cell: the slowest shard's cost against the mean (1.0000 is perfectly even), and in brackets "
        "the most layers one shard renders (programs it compiles per view). A shard is a contiguous run of "
        "the job's filters in layer order; a picture costs the activation values of the network cut at its "
        f"layer plus {PIXEL_COST:g} per image pixel, and a shard pays once for the contrast term's reference "
        "pictures of each first layer it touches.\n\n"
        "| atlas | views | N = 2 | N = 8 | N = 64 |\n| --- | --- | ---: | ---: | ---: |\n" + "\n".join(rows)
        + "\n\nTimed instead with the per-layer throughput one H100 measured (VGG16, channel views, 128 px; "
        "the GPU check above, where block5_conv3 takes 2.5 times block1_conv1's time and has 177 times its "
        "FLOP), the slowest shard against the mean:\n\n"
        "| split by | N = 2 | N = 8 | N = 64 |\n| --- | ---: | ---: | ---: |\n"
        "| this cost model | " + " | ".join(f"{x:.3f}" for x in ours) + " |\n"
        "| FLOP of the truncated network | " + " | ".join(f"{x:.3f}" for x in flop) + " |"
    )
    return "shards", text
