"""Which of its two passes the installed Pillow runs first when a resize changes both width and height.

The order matters for exactness: the 8-bit image between the passes is rounded, so resizing horizontally then
vertically and the other way round differ by a level here and there. Earlier Pillow releases always resample
horizontally first. Pillow 13 resamples vertically first when the height shrinks and the width grows by more than
half the height's change (measured on 600 random size pairs: ``2 * (out_w - in_w) > out_h - in_h``, judged on the
whole image even when a box is given). Which rule the installed Pillow follows is found once per process by resizing
small probe images both ways; a Pillow that follows neither rule gets no banded resizing at all
(:func:`horizontal_first` returns None), so its results stay those of one call.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
import PIL.Image

Rule = Callable[[int, int, int, int], bool]  # (in_w, in_h, out_w, out_h) -> horizontal pass first


def _always_horizontal(in_w: int, in_h: int, out_w: int, out_h: int) -> bool:
    return True


def _vertical_when_height_shrinks(in_w: int, in_h: int, out_w: int, out_h: int) -> bool:
    return not (out_h < in_h and 2 * (out_w - in_w) > out_h - in_h)


RULES: tuple[Rule, ...] = (_always_horizontal, _vertical_when_height_shrinks)

# (in_w, in_h, out_w, out_h) on both sides of the second rule's boundary, and cases where both rules agree
PROBES = ((48, 48, 27, 8), (48, 48, 29, 8), (48, 48, 80, 30), (48, 48, 80, 60), (48, 80, 27, 40), (48, 80, 29, 40),
          (80, 48, 40, 30), (48, 48, 20, 40), (40, 90, 90, 20))


def observed_order(in_w: int, in_h: int, out_w: int, out_h: int, seed: int = 0) -> bool | None:
    """Whether Pillow's bilinear resize of a random 8-bit image from (in_w, in_h) to (out_w, out_h) equals the
    horizontal-then-vertical passes (True), the vertical-then-horizontal ones (False), or neither or both (None)."""
    image = PIL.Image.fromarray(_noise(in_h, in_w, seed))
    whole = np.asarray(image.resize((out_w, out_h), PIL.Image.Resampling.BILINEAR))
    across = image.resize((out_w, in_h), PIL.Image.Resampling.BILINEAR).resize((out_w, out_h),
                                                                               PIL.Image.Resampling.BILINEAR)
    down = image.resize((in_w, out_h), PIL.Image.Resampling.BILINEAR).resize((out_w, out_h),
                                                                             PIL.Image.Resampling.BILINEAR)
    horizontal, vertical = np.array_equal(whole, np.asarray(across)), np.array_equal(whole, np.asarray(down))
    return None if horizontal == vertical else horizontal


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    """(height, width) uint8 pixels that look random: a 32-bit integer hash of the index (numpy.random's first use
    costs milliseconds)."""
    mask = np.uint64(0xFFFFFFFF)
    x = (np.arange(height * width, dtype=np.uint64) + np.uint64(seed * 7919 + 1)) * np.uint64(0x9E3779B1) & mask
    x = ((x ^ (x >> np.uint64(15))) * np.uint64(0x85EBCA77)) & mask
    x = ((x ^ (x >> np.uint64(13))) * np.uint64(0xC2B2AE35)) & mask
    return (x >> np.uint64(24)).astype(np.uint8).reshape(height, width)


@lru_cache(maxsize=1)
def installed_rule() -> Rule | None:
    """The rule in :data:`RULES` that every probe of the installed Pillow follows, or None."""
    observed = [observed_order(*probe) for probe in PROBES]
    for rule in RULES:
        if all(seen == rule(*probe) for seen, probe in zip(observed, PROBES)):
            return rule
    return None


def horizontal_first(in_w: int, in_h: int, out_w: int, out_h: int) -> bool | None:
    """Whether the installed Pillow resizes (in_w, in_h) to (out_w, out_h) horizontally first; None if unknown."""
    rule = installed_rule()
    return None if rule is None else rule(in_w, in_h, out_w, out_h)
