"""The views of a filter: the optimizations the atlas runs for it, and the files each one writes.

``channel`` (the layer grid's picture): the image that drives the whole map up. ``neuron``: the unit at
the centre of the map (what one position wants). ``negative``: the image that turns the filter off
hardest. ``diversity``: four pictures of the channel optimized together, pushed apart (four ways to
drive the filter). Microscope shows such views side by side so that what a filter wants can be told
from what it merely tolerates.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.errors import AtlasError


@dataclass(frozen=True)
class View:
    name: str
    code: int  # part of each picture's random seed (0 keeps the channel view's seeds as they were)
    images: int  # pictures per filter
    title: str
    what: str  # one line for the filter page

    def suffixes(self) -> list[str]:
        """File name suffixes of the view's pictures, before ``.png``: '' is ``NNNN.png``."""
        if self.name == "channel":
            return [""]
        if self.images == 1:
            return [f".{self.name}"]
        return [f".{self.name}-{i}" for i in range(1, self.images + 1)]


CHANNEL = View("channel", 0, 1, "Channel", "the image that drives the whole map of the filter up")
NEURON = View("neuron", 1, 1, "Neuron", "the image that drives the unit at the centre of the map (before its ReLU)")
NEGATIVE = View("negative", 2, 1, "Negative", "the image that turns the filter off hardest (its mean before the ReLU, minimized)")
DIVERSITY = View("diversity", 3, 4, "Diversity", "four images of the channel optimized together to differ from each other")
VIEWS = {view.name: view for view in (CHANNEL, NEURON, NEGATIVE, DIVERSITY)}


def parse_views(spec: str) -> list[View]:
    """``channel,neuron`` or ``all`` -> views in their canonical order."""
    if spec.strip() == "all":
        return list(VIEWS.values())
    names = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [name for name in names if name not in VIEWS]
    if unknown or not names:
        raise AtlasError(f"--views {spec!r}: choose from {', '.join(VIEWS)} (or all)")
    return [view for view in VIEWS.values() if view.name in names]
