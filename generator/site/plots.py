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
    summary: str = ""  # the plot in words: its text alternative


MAX_POINTS = 64  # a curve's points on the page: one per 6 px of the plot's width


def envelope(values: list[float], limit: int = MAX_POINTS) -> list[tuple[int, float]]:
    """(step index, value) pairs to draw: all of them up to ``limit``, else the lowest and the highest
    of each run of steps in step order, so that spikes and the noise band survive the thinning (every
    step of four curves made a filter page 70 KB; every step stays in the filter's JSON)."""
    points = [(i, v) for i, v in enumerate(values) if math.isfinite(v)]
    if len(points) <= limit:
        return points
    runs = limit // 2
    out: list[tuple[int, float]] = []
    for r in range(runs):
        run = points[r * len(points) // runs:(r + 1) * len(points) // runs]
        lo, hi = min(run, key=lambda p: p[1]), max(run, key=lambda p: p[1])
        out.extend(sorted({lo, hi}))
    return out


def line_plot(values: list[float], frame: Frame = Frame()) -> LinePlot:
    """A loss curve: step (1..n) against value, thinned to ``MAX_POINTS`` points (``envelope``)."""
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    y_ticks = nice_ticks(min(finite), max(finite))
    lo, hi = y_ticks[0], y_ticks[-1]
    n = max(1, len(values))
    x_ticks = nice_ticks(0, n)

    def x(step: float) -> float:
        return frame.x0 + (frame.x1 - frame.x0) * step / (x_ticks[-1] or 1)

    def y(value: float) -> float:
        return frame.y0 - (frame.y0 - frame.y1) * (value - lo) / ((hi - lo) or 1)

    # whole pixels, as the steps already are: half a pixel off at most, under the curve's 2 px stroke
    points = " ".join(f"{x(i + 1):.0f},{y(v):.0f}" for i, v in envelope(values))
    return LinePlot(
        frame,
        points,
        [Tick(x(t), _label(t)) for t in x_ticks],
        [Tick(y(t), _label(t)) for t in y_ticks],
        y(0.0) if lo < 0 < hi else None,
        summary=_curve_words(values),
    )


def _curve_words(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return f"{len(values)} steps, none of them finite"
    return (f"{len(values)} steps, from {finite[0]:.4g} to {finite[-1]:.4g} (lowest {min(finite):.4g}, "
            f"highest {max(finite):.4g})")


def _bars_words(bars: list, unit: str) -> str:
    """Where most of a histogram's counts are."""
    total = sum(b.count for b in bars)
    if not total:
        return f"no {unit}"
    top = max(bars, key=lambda b: b.count)
    return (f"{total} {unit} from {bars[0].lo:.4g} to {bars[-1].hi:.4g}; the most, {top.count}, "
            f"between {top.lo:.4g} and {top.hi:.4g}")


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
    summary: str = ""


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
        frame, bars, [Tick(x(t), _label(t)) for t in x_ticks], [Tick(y(t), _label(t)) for t in y_ticks],
        summary=_bars_words(bars, "filters"),
    )


def symlog(value: float) -> float:
    """The axis of activation distributions: ``sign(v) log10(1 + |v|)``, so that 0.5 and 500 both show."""
    return math.copysign(math.log10(1.0 + abs(value)), value)


@dataclass(frozen=True)
class Mark:
    x: float
    label: str
    value: float


@dataclass(frozen=True)
class Distribution:
    frame: Frame
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    marks: list[Mark]
    points: str = ""
    zero_y: float | None = None
    summary: str = ""


def distribution(edges: list[float], counts: list[int], marks: list[tuple[float, str]] = (),
                 frame: Frame = Frame(height=200)) -> Distribution:
    """Counts between ``edges`` (in value units, bins uniform in ``symlog``) on a symlog x axis, with
    vertical marks (the filter's own picture)."""
    ends = [symlog(edges[0]), symlog(edges[-1])] + [symlog(v) for v, _ in marks]
    lo, hi = min(ends), max(ends)
    if hi <= lo:
        hi = lo + 1.0
    top_count = max(counts) if counts else 1
    y_ticks = nice_ticks(0, top_count or 1)
    top = y_ticks[-1] or 1

    def x(value: float) -> float:
        return frame.x0 + (frame.x1 - frame.x0) * (symlog(value) - lo) / (hi - lo)

    def y(count: float) -> float:
        return frame.y0 - (frame.y0 - frame.y1) * count / top

    bars = [
        Bar(x(a), y(c), max(0.5, x(b) - x(a) - 0.5), frame.y0 - y(c), c, a, b)
        for a, b, c in zip(edges[:-1], edges[1:], counts)
        if c
    ]
    candidates = [0.0] + [sign * 10.0 ** e for e in range(-1, 7) for sign in (1, -1)]
    ticks: list[Tick] = []
    for value in sorted((v for v in candidates if lo <= symlog(v) <= hi), key=lambda v: (abs(v) != 0, -abs(v))):
        pos = x(value)
        if all(abs(pos - t.pos) >= 40 for t in ticks):  # room for a label
            ticks.append(Tick(pos, _label(value)))
    words = _bars_words(bars, "images") + "".join(f"; {label}: {v:.4g}" for v, label in marks)
    return Distribution(frame, bars, sorted(ticks, key=lambda t: t.pos), [Tick(y(t), _label(t)) for t in y_ticks],
                        [Mark(x(v), label, v) for v, label in marks], summary=words)


@dataclass(frozen=True)
class KernelImage:
    """A first-layer kernel as coloured squares: the filter's weights seen as the image patch they
    match best (each weight scaled into [0, 1] around grey)."""

    side: int
    cell: int
    squares: list[tuple[int, int, str]]  # x, y, "#rrggbb"


def kernel_image(kernel: list, cell: int = 16) -> KernelImage:
    """``kernel[y][x] = [r, g, b]`` weights -> squares of an SVG."""
    flat = [abs(v) for row in kernel for px in row for v in px] or [1.0]
    scale = max(flat) or 1.0
    squares = []
    for j, row in enumerate(kernel):
        for i, px in enumerate(row):
            rgb = [min(255, max(0, round((0.5 + 0.5 * v / scale) * 255))) for v in px]
            squares.append((i * cell, j * cell, "#{:02x}{:02x}{:02x}".format(*rgb)))
    return KernelImage(len(kernel) * cell, cell, squares)


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    label: str  # its tooltip


@dataclass(frozen=True)
class PathPlot:
    """Two curves over the layers up to a filter's: the picture's path similarity and a baseline's."""

    frame: Frame
    points: str  # the picture
    baseline: str  # the baseline ("" if none)
    dots: list[Dot]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    zero_y: float | None
    bars: tuple = ()
    summary: str = ""


def path_plot(layers: list[str], values: list[float], baseline: list[float] | None = None,
              frame: Frame = Frame(width=420, height=210, left=48, top=26, bottom=36)) -> PathPlot:
    """Values per layer (1 .. n from the first layer to the filter's), each a rank correlation: the y
    axis spans at least 0 to 1 and reaches below 0 where a value does."""
    finite = [v for v in values + (baseline or []) if v is not None and math.isfinite(v)] or [0.0]
    y_ticks = nice_ticks(min(0.0, min(finite)), max(1.0, max(finite)))
    lo, hi = y_ticks[0], y_ticks[-1]
    n = max(1, len(layers))

    def x(i: int) -> float:  # layer i (0-based) in the middle of its share of the width
        return frame.x0 + (frame.x1 - frame.x0) * (i + 0.5) / n

    def y(value: float) -> float:
        return frame.y0 - (frame.y0 - frame.y1) * (value - lo) / ((hi - lo) or 1)

    def line(series: list[float] | None) -> str:
        if not series:
            return ""
        return " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(series) if v is not None and math.isfinite(v))

    every = max(1, math.ceil(n / 16))  # at most 16 labelled ticks (ResNet50 has 49 layers)
    ticks = [Tick(x(i), str(i + 1)) for i in range(n) if i % every == 0 or i == n - 1]
    dots = [Dot(x(i), y(v), f"{name}: {v:.3f}" + (f", random photo {baseline[i]:.3f}" if baseline and baseline[i] is not None else ""))
            for i, (name, v) in enumerate(zip(layers, values)) if v is not None and math.isfinite(v)]
    words = "; ".join(d.label for d in dots)
    return PathPlot(frame, line(values), line(baseline), dots, ticks, [Tick(y(t), _label(t)) for t in y_ticks],
                    y(0.0) if lo < 0 < hi else None, summary=f"by layer, {words}" if words else "no layer measured")
