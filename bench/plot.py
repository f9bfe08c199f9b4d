"""A small horizontal bar chart of the benchmark's ratios against their targets, drawn with Pillow.

Every bar is the measured value divided by its target, so one vertical line at 1.0 marks every
target: a bar that ends left of it is within its target (green), one that ends right of it is not
(red). A negative value (e.g. a difference in the pack's favour) draws no bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH = 1100
ROW_HEIGHT = 26
LABEL_WIDTH = 380
VALUE_WIDTH = 170
MARGIN = 20
TITLE_HEIGHT = 56
AXIS_HEIGHT = 40

PASS_COLOUR = (76, 160, 90)
FAIL_COLOUR = (205, 70, 60)
TARGET_COLOUR = (30, 30, 30)
GRID_COLOUR = (225, 225, 225)
TEXT_COLOUR = (20, 20, 20)


@dataclass(frozen=True)
class Bar:
    """One measured figure: `value` in its own unit, compared with `target` (None: no target)."""

    label: str
    value: float
    target: float
    text: str  # what is written at the end of the bar, e.g. "1.07x / 1.20x"

    @property
    def normalised(self) -> float:
        return max(0.0, self.value / self.target)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font has one size
        return ImageFont.load_default()


def draw_ratio_chart(bars: list[Bar], path: Path, title: str, subtitle: str = "") -> None:
    """Write a PNG of `bars` to `path` (its folder must exist)."""
    height = TITLE_HEIGHT + AXIS_HEIGHT + ROW_HEIGHT * max(1, len(bars)) + MARGIN
    image = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(image)
    font, small, big = _font(13), _font(11), _font(16)

    draw.text((MARGIN, 10), title, fill=TEXT_COLOUR, font=big)
    if subtitle:
        draw.text((MARGIN, 32), subtitle, fill=TEXT_COLOUR, font=small)

    left = MARGIN + LABEL_WIDTH
    right = WIDTH - MARGIN - VALUE_WIDTH
    top = TITLE_HEIGHT + AXIS_HEIGHT
    scale_max = max([1.5, *(bar.normalised * 1.1 for bar in bars)])
    step = 0.25 if scale_max <= 2 else 0.5 if scale_max <= 4 else 1.0

    def x_of(value: float) -> float:
        return left + (right - left) * min(value, scale_max) / scale_max

    tick = 0.0
    while tick <= scale_max + 1e-9:
        x = x_of(tick)
        draw.line([(x, top - 6), (x, height - MARGIN)], fill=GRID_COLOUR)
        draw.text((x - 10, top - 22), f"{tick:g}", fill=TEXT_COLOUR, font=small)
        tick += step
    draw.text((left, TITLE_HEIGHT), "measured / target (target = 1)", fill=TEXT_COLOUR, font=small)

    for row, bar in enumerate(bars):
        y = top + row * ROW_HEIGHT
        colour = PASS_COLOUR if bar.value <= bar.target else FAIL_COLOUR
        draw.text((MARGIN, y + 6), bar.label, fill=TEXT_COLOUR, font=font)
        draw.rectangle([left, y + 4, max(left + 1, x_of(bar.normalised)), y + ROW_HEIGHT - 4], fill=colour)
        draw.text((right + 8, y + 6), bar.text, fill=TEXT_COLOUR, font=font)

    target_x = x_of(1.0)
    draw.line([(target_x, top - 6), (target_x, height - MARGIN)], fill=TARGET_COLOUR, width=2)
    image.save(path)
