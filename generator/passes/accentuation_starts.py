"""Where the accentuation view starts: each filter's strongest dataset example, read at the atlas's size.

The examples pass names each filter's top image (``NNNN.examples.json``, ``top[0]``); the picture
starts from that whole image, its centre square resampled to the atlas's side exactly as the examples
pass feeds images to the network (``evidence.imagesets.load_image``). A filter whose examples changed
since its accentuation was made (another top image) is made again.
"""

from __future__ import annotations

from generator.atlas.files import read_json
from generator.evidence.imagesets import ImageSet, load_image
from generator.network.layers import Layer
from generator.paths import AtlasPaths
from generator.render.accentuation import Start


def strongest_examples(paths: AtlasPaths, layer: Layer, filters: list[int]) -> dict[int, tuple[str, float]]:
    """Per filter with dataset examples: its strongest image's name and value (filters without are left out)."""
    out = {}
    for f in filters:
        path = paths.examples_json(layer.name, f)
        if not path.exists():
            continue
        top = read_json(path, f"dataset examples of {layer.name}:{f}").get("top") or []
        if top and isinstance(top[0].get("image"), str):
            out[f] = (top[0]["image"], float(top[0].get("value", 0.0)))
    return out


def is_current(record: dict, strongest: tuple[str, float]) -> bool:
    """Whether a filter's accentuation started from its present strongest example."""
    entry = (record.get("views") or {}).get("accentuation") or {}
    return (entry.get("start") or {}).get("image") == strongest[0]


def load_starts(images: ImageSet, strongest: dict[int, tuple[str, float]], filters: list[int],
                size: int) -> dict[int, Start]:
    """The start pictures of ``filters`` at ``size`` px; a filter whose image cannot be read is left out."""
    index = {name: i for i, name in enumerate(images.files)}
    out = {}
    for f in filters:
        name, value = strongest[f]
        if name not in index:
            continue
        pixels = load_image(images.path(index[name]), size)
        if pixels is not None:
            out[f] = Start(name, value, pixels)
    return out
