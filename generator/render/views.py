"""The views of a filter: the optimizations the atlas runs for it, and the files each one writes.

``channel`` (the layer grid's picture): the image that drives the whole map up. ``neuron``: the unit at
the centre of the map (what one position wants). ``negative``: the image that turns the filter off
hardest. ``diversity``: four pictures of the channel optimized together, pushed apart (four ways to
drive the filter). ``field``: the centre unit again, on a canvas a few receptive fields wide instead of
the whole image, for the layers whose receptive field is under a quarter of it (VGG16 at 128 px: block1
to block3_conv1): the 3- to 24-pixel pattern at its own scale, where the tiled channel picture repeats
it across the frame. ``accentuation`` (made where the atlas has dataset examples): the filter's
strongest photograph with the filter raised, held near the photo by an earlier layer
(``generator.render.accentuation``). Microscope shows such views side by side so that what a filter wants can be told
from what it merely tolerates.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.errors import AtlasError
from generator.network.layers import Layer

FIELD_SHARE = 4  # the field view is for layers whose receptive field is under 1/FIELD_SHARE of the image
FIELD_SCALE = 4  # its canvas: FIELD_SCALE receptive fields wide (then up to a whole number of map pixels)


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

    @property
    def from_photo(self) -> bool:
        """Whether the view starts from the filter's strongest dataset example (needs the examples)."""
        return self.name == "accentuation"

    @property
    def at_centre(self) -> bool:
        """Whether the view's objective is the centre unit (the neuron and field views)."""
        return self.name in ("neuron", "field")

    def canvas(self, layer: Layer, size: int, fixed: int | None = None) -> int | None:
        """Side of the view's pictures of ``layer`` in an atlas of ``size`` px pictures (``fixed``: the
        side a network's input is fixed to, if it is); None where the view does not apply."""
        return field_canvas(layer, size, fixed) if self.name == "field" else size


CHANNEL = View("channel", 0, 1, "Channel", "the image that drives the whole map of the filter up")
NEURON = View("neuron", 1, 1, "Neuron", "the image that drives the unit at the centre of the map (before its ReLU)")
NEGATIVE = View("negative", 2, 1, "Negative", "the image that turns the filter off hardest (its mean before the ReLU, minimized)")
DIVERSITY = View("diversity", 3, 4, "Diversity", "four images of the channel optimized together to differ from each other")
FIELD = View("field", 4, 1, "Field", "the image that drives the unit at the centre of the map (before its ReLU), "
             "on a canvas four receptive fields wide: the pattern at its own scale")
ACCENTUATION = View("accentuation", 5, 1, "Accentuation", "the filter's strongest photograph with the filter raised, "
                    "while an earlier layer's activations are held near the photograph's")
VIEWS = {view.name: view for view in (CHANNEL, NEURON, NEGATIVE, DIVERSITY, FIELD, ACCENTUATION)}


def field_canvas(layer: Layer, size: int, fixed: int | None = None) -> int | None:
    """The field view's canvas for ``layer`` at ``size`` px: ``FIELD_SCALE`` receptive fields, rounded
    up to a whole number of the layer's strides and to a map of at least 2x2 units (what the render
    config asks of any picture); None where the receptive field is not under ``1/FIELD_SHARE`` of the
    image, or the network reads one input side only (``fixed``)."""
    if fixed or layer.receptive_field * FIELD_SHARE >= size:
        return None
    stride = max(1, layer.stride)
    side = -(-FIELD_SCALE * layer.receptive_field // stride) * stride
    while layer.output_size(side) < 2:
        side += stride
    return min(side, size)


def views_of(views, layer: Layer, size: int, fixed: int | None = None) -> list[View]:
    """Those of ``views`` that apply to ``layer`` at ``size`` px (every view but ``field`` applies to all)."""
    return [view for view in views if view.canvas(layer, size, fixed) is not None]


def parse_views(spec: str) -> list[View]:
    """``channel,neuron`` or ``all`` -> views in their canonical order."""
    if spec.strip() == "all":
        return list(VIEWS.values())
    names = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [name for name in names if name not in VIEWS]
    if unknown or not names:
        raise AtlasError(f"--views {spec!r}: choose from {', '.join(VIEWS)} (or all)")
    return [view for view in VIEWS.values() if view.name in names]
