"""Numbers -> plot geometry (points, ticks) for the inline SVG plots; templates draw them.

The plots are plain SVG in the page: no JavaScript, crisp at any zoom, readable without a network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tick:
    pos: float  # pixel coordinate along the axis
    label: str


@dataclass(frozen=True)
class Frame:
    """The drawing area inside the axes of a ``width`` x ``height`` SVG."""

    width: int = 480
    height: int = 240
    left: int = 64
    right: int = 12
    top: int = 12
    bottom: int = 40

    @property
    def x0(self) -> int:
        return self.left

    @property
    def x1(self) -> int:
        return self.width - self.right

    @property
    def y0(self) -> int:
        return self.height - self.bottom

    @property
    def y1(self) -> int:
        return self.top


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(lo / step) * step
    ticks = [round(start, 10)]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        return f"{value:.1e}"
    return f"{value:g}"


@dataclass(frozen=True)
class LinePlot:
    frame: Frame
    points: str  # "x,y x,y ..." for a <polyline>
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    zero_y: float | None  # where y = 0 is, if inside the plot
    bars: tuple = ()


def line_plot(values: list[float], frame: Frame = Frame()) -> LinePlot:
    """A loss curve: step (1..n) against value."""
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    y_ticks = nice_ticks(min(finite), max(finite))
    lo, hi = y_ticks[0], y_ticks[-1]
    n = max(1, len(values))
    x_ticks = nice_ticks(0, n)

    def x(step: float) -> float:
        return frame.x0 + (frame.x1 - frame.x0) * step / (x_ticks[-1] or 1)

    def y(value: float) -> float:
        return frame.y0 - (frame.y0 - frame.y1) * (value - lo) / ((hi - lo) or 1)

    points = " ".join(
        f"{x(i + 1):.1f},{y(v):.1f}" for i, v in enumerate(values) if math.isfinite(v)
    )
    return LinePlot(
        frame,
        points,
        [Tick(x(t), _label(t)) for t in x_ticks],
        [Tick(y(t), _label(t)) for t in y_ticks],
        y(0.0) if lo < 0 < hi else None,
    )


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    lo: float
    hi: float


@dataclass(frozen=True)
class Histogram:
    frame: Frame
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    points: str = ""
    zero_y: float | None = None


def histogram(values: list[float], bins: int = 24, frame: Frame = Frame()) -> Histogram:
    """The distribution of a layer's final losses."""
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    x_ticks = nice_ticks(min(finite), max(finite))
    lo, hi = x_ticks[0], x_ticks[-1]
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in finite:
        counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    y_ticks = nice_ticks(0, max(counts) or 1)
    top = y_ticks[-1] or 1

    def x(value: float) -> float:
        return frame.x0 + (frame.x1 - frame.x0) * (value - lo) / ((hi - lo) or 1)

    def y(count: float) -> float:
        return frame.y0 - (frame.y0 - frame.y1) * count / top

    bars = [
        Bar(x(lo + i * width) + 0.5, y(c), max(0.5, x(lo + (i + 1) * width) - x(lo + i * width) - 1),
            frame.y0 - y(c), c, lo + i * width, lo + (i + 1) * width)
        for i, c in enumerate(counts)
    ]
    return Histogram(
        frame, bars, [Tick(x(t), _label(t)) for t in x_ticks], [Tick(y(t), _label(t)) for t in y_ticks]
    )
