"""Tiny line charts with PIL (matplotlib is not a dependency): axes, tick labels, a title and a legend.

    line_chart("nfe.png", [Series("dmd-4", [1, 2, 4, 8], [.5, .6, .7, .6])], title=..., xlabel=..., ylabel=...,
               xlog2=True, xticks=[1, 2, 4, 8])
A Series with `hline=True` is drawn as a dashed horizontal reference at its (single) y value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22", "#393b79", "#637939"]
SIZE = (960, 560)
MARGIN = dict(left=80, right=250, top=50, bottom=64)


@dataclass
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    hline: bool = False
    dashed: bool = False
    colour: Optional[str] = None
    extra: dict = field(default_factory=dict)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0 if math.isfinite(lo) else 1.0
        lo = hi - 1.0
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(v, 10))
    return ticks


def _label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:g}" if abs(v) >= 1 else f"{v:.4g}"


def _dashed(draw: ImageDraw.ImageDraw, p0, p1, fill, width=2, dash=8, gap=6) -> None:
    (x0, y0), (x1, y1) = p0, p1
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0:
        return
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    d = 0.0
    while d < length:
        e = min(d + dash, length)
        draw.line([(x0 + ux * d, y0 + uy * d), (x0 + ux * e, y0 + uy * e)], fill=fill, width=width)
        d = e + gap


def line_chart(path: str, series: Sequence[Series], *, title: str, xlabel: str, ylabel: str, xlog2: bool = False,
               xticks: Optional[Sequence[float]] = None, ylim: Optional[tuple[float, float]] = None) -> str:
    W, H = SIZE
    left, right, top, bottom = MARGIN["left"], W - MARGIN["right"], MARGIN["top"], H - MARGIN["bottom"]
    img = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(img)
    font, small = _font(15), _font(12)

    def fx(x):
        return math.log2(x) if xlog2 else float(x)

    finite = [s for s in series if any(y == y for y in s.ys)]
    xs = [fx(x) for s in finite if not s.hline for x in s.xs]
    if xticks:
        xs += [fx(x) for x in xticks]
    ys = [y for s in finite for y in s.ys if y == y and math.isfinite(y)]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    y_lo, y_hi = ylim if ylim else ((min(ys), max(ys)) if ys else (0.0, 1.0))
    yt = nice_ticks(y_lo, y_hi)
    y_lo, y_hi = min(yt[0], y_lo), max(yt[-1], y_hi)
    pad = 0.04 * (x_hi - x_lo)
    x_lo, x_hi = x_lo - pad, x_hi + pad

    def px(x):
        return left + (fx(x) - x_lo) / (x_hi - x_lo) * (right - left)

    def py(y):
        return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)

    # grid, axes, ticks
    for t in yt:
        y = py(t)
        draw.line([(left, y), (right, y)], fill="#e6e6e6")
        draw.line([(left - 5, y), (left, y)], fill="black")
        draw.text((left - 8, y), _label(t), fill="black", font=small, anchor="rm")
    xt = list(xticks) if xticks else (
        [2 ** k for k in range(math.floor(x_lo), math.ceil(x_hi) + 1)] if xlog2 else nice_ticks(x_lo + pad, x_hi - pad))
    for t in xt:
        x = px(t)
        if left - 1 <= x <= right + 1:
            draw.line([(x, top), (x, bottom)], fill="#f0f0f0")
            draw.line([(x, bottom), (x, bottom + 5)], fill="black")
            draw.text((x, bottom + 8), _label(t), fill="black", font=small, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) / 2, 18), title, fill="black", font=font, anchor="mm")
    draw.text(((left + right) / 2, H - 22), xlabel, fill="black", font=font, anchor="mm")
    ylab = Image.new("RGBA", (bottom - top, 22), (255, 255, 255, 0))
    ImageDraw.Draw(ylab).text(((bottom - top) / 2, 11), ylabel, fill="black", font=font, anchor="mm")
    ylab = ylab.rotate(90, expand=True)
    img.paste(ylab, (14, top), ylab)

    # series + legend
    ly = top + 4
    for k, s in enumerate(series):
        colour = s.colour or PALETTE[k % len(PALETTE)]
        dashed = s.dashed or s.hline
        if s.hline:
            y = next((v for v in s.ys if v == v), float("nan"))
            if y == y:
                _dashed(draw, (left, py(y)), (right, py(y)), colour)
        else:
            pts = [(px(x), py(y)) for x, y in zip(s.xs, s.ys) if y == y and math.isfinite(y)]
            for a, b in zip(pts, pts[1:]):
                (_dashed(draw, a, b, colour) if dashed else draw.line([a, b], fill=colour, width=2))
            for x, y in pts:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        lx = right + 14
        if dashed:
            _dashed(draw, (lx, ly + 7), (lx + 28, ly + 7), colour, dash=6, gap=4)
        else:
            draw.line([(lx, ly + 7), (lx + 28, ly + 7)], fill=colour, width=2)
        draw.text((lx + 36, ly + 7), s.label, fill="black", font=small, anchor="lm")
        ly += 20
    img.save(path)
    return path
