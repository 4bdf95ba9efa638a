"""The render configuration: one frozen object, hashed to tell whose output a file is.

The hash covers everything that changes a picture (network weights, method, size, steps, learning
rate, seed, precision, backend, the method's tuned constants, and for a user's network the
preprocessing its pictures go through), and nothing that does not (which
layers, filters or views, batch size, output folder): so a resumed or extended run reuses what is on
disk, and a run with other settings never mixes its files with these.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

from generator.errors import AtlasError
from generator.network.layers import Layer
from generator.render.transforms import Robustness

METHODS = ("lucid", "naive")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
METHOD_VERSION = "9"  # bump when a method's algorithm changes, so old atlases are not resumed into

DEFAULT_LR = {"lucid": 0.05, "naive": 10.0}


def robustness_for(layer: Layer) -> Robustness:
    """Transform strength by receptive field: a 3-pixel filter is blurred away by an 8-pixel jitter,
    so small receptive fields get milder transforms; from 24 pixels on, Lucid's defaults."""
    if layer.receptive_field <= 7:
        return Robustness(jitter=2.0, scale=0.02, rotate=2.0, jitter2=1.0)
    if layer.receptive_field <= 20:
        return Robustness(jitter=4.0, scale=0.05, rotate=5.0, jitter2=2.0)
    return Robustness()


@dataclass(frozen=True)
class RenderConfig:
    """Settings of one atlas. ``precision`` is the resolved one (never ``auto``)."""

    model: str = "vgg16"
    weights: str = "imagenet"
    weights_sha256: str = ""
    method: str = "lucid"
    size: int = 128
    steps: int = 256
    lr: float = 0.05
    seed: int = 0
    precision: str = "float32"
    backend: str = "tensorflow"
    # lucid only: starting contrast (Lucid's 0.01: grey), the share of the pre-ReLU mean in the
    # objective, the wake-up of rows that are off everywhere (at the centre unit, or on the floor where
    # the floor is on), its learning-rate factor and the share of the run after which a row still off
    # starts again at the base rate (0: never), the 1/f spectrum's decay, the periodic picture and its
    # tile (in receptive fields, and the smallest tile in pixels), the weight of the floor term that
    # pulls faint units up to a tenth of the peak, the weight of the diversity view's penalty (relative
    # to the channel objective), and the contrast term of the first layers: its weight, its margin and
    # the largest receptive field (px) it is on for; the weight of the strongest unit in the channel
    # objective; in the first layers (receptive field at most ``contrast_field`` px) the spectrum's decay
    # and the learning rate's factor.
    init_std: float = 0.01
    pre_share: float = 0.0
    wake: bool = True
    wake_lr: float = 4.0
    wake_patience: float = 0.25
    decay_power: float = 1.0
    periodic: bool = True
    tile_size: float = 1.0
    tile_min: int = 16
    floor: float = 4.0
    diversity_weight: float = 0.5
    contrast: float = 0.25
    contrast_margin: float = 0.25
    contrast_field: int = 7
    peak: float = 0.3
    first_decay_power: float = 0.75
    first_lr_factor: float = 2.0
    method_version: str = METHOD_VERSION
    loss_scale: float = field(default=256.0)
    # a user's network: how pictures become its input (inputs.Preprocessing.key); empty for the zoo's
    # networks, whose name fixes it (so their hashes are what they were before users' networks came)
    preprocessing: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise AtlasError(f"--method {self.method!r}: choose {' or '.join(METHODS)}")
        if not (isinstance(self.steps, int) and self.steps > 0):
            raise AtlasError(f"--steps {self.steps!r}: give a positive whole number of steps")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise AtlasError(f"--lr {self.lr!r}: give a positive finite learning rate")
        if not (isinstance(self.size, int) and self.size >= 16):
            raise AtlasError(f"--size {self.size!r}: give an image side of at least 16 pixels")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**32):
            raise AtlasError(f"--seed {self.seed!r}: give a whole number from 0 to 4294967295")
        if self.precision not in PRECISIONS[1:]:
            raise AtlasError(f"--precision {self.precision!r}: choose {', '.join(PRECISIONS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def hash(self) -> str:
        """Stable 16-hex-digit id of the settings that shape the pictures."""
        picture = self.to_dict()
        picture.pop("weights")  # the sha256 names the weights; the source name does not change them
        if not picture["preprocessing"]:
            picture.pop("preprocessing")
        text = json.dumps(picture, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def first_layer(self, layer: Layer) -> bool:
        """Whether ``layer`` is one of the first layers (receptive field at most ``contrast_field`` px),
        whose filters of a 3- or 5-pixel patch want sharp, saturated patterns: a flatter spectrum (less
        damping of the high frequencies) and a faster rate bring them past the strongest photo in a short
        run (measured at 96 px, 64 steps: BENCHMARKS.md, trust)."""
        return self.method == "lucid" and layer.receptive_field <= self.contrast_field

    def decay_for(self, layer: Layer) -> float:
        """The 1/f spectrum's decay power of ``layer``'s pictures."""
        return self.first_decay_power if self.first_layer(layer) else self.decay_power

    def lr_for(self, layer: Layer) -> float:
        """The base learning rate of ``layer``'s pictures."""
        return self.lr * self.first_lr_factor if self.first_layer(layer) else self.lr

    def patience_steps(self) -> int:
        """The step after which a row never on starts again (0: never)."""
        if self.wake_patience <= 0:
            return 0
        return max(1, round(self.steps * self.wake_patience))

    def check_layer(self, layer: Layer) -> None:
        """Refuse an image too small for the layer: its map must be at least 2x2."""
        if layer.output_size(self.size) < 2:
            need = self.size
            while layer.output_size(need) < 2:
                need += 1
            raise AtlasError(
                f"--size {self.size} is too small for {layer.name}: its map would be "
                f"{max(0, layer.output_size(self.size))} px; use --size {need} or more"
            )

    def tile_period(self, layer: Layer) -> int:
        """Side of the repeated tile while the picture is periodic: about ``tile_size`` receptive
        fields, a power of two (so it divides the usual image sides) from ``tile_min`` pixels (a smaller
        tile only holds gratings) to a quarter of the image (the tile repeats at least 4 times across it).
        A layer whose receptive field spans more than half the image is not tiled: its tile is the image."""
        if layer.receptive_field * 2 > self.size:
            return self.size
        side = 2 ** math.ceil(math.log2(max(1.0, self.tile_size * layer.receptive_field)))
        return int(min(max(side, self.tile_min), max(self.tile_min, self.size // 4)))
