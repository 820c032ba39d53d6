"""The two star rules, side by side: one cut of a range into five, on two ranges.

Both follow Hugging Face's AI Energy Score: a range is cut into five equal intervals;
the lowest 20% (the least energy) get 5 stars, the highest 20% one star, and a value
exactly on a boundary belongs to the better interval. They differ only in the range:

* :func:`stars_for_use` -- a lone test, by its budget use: the range is ``[0, budget]``
  (the verdict's rating; over the budget -> 0 stars, the test fails);
* :func:`group_stars` -- a member of a group, by its place in the group's measured
  ``[min, max]`` (see :mod:`pytest_energy.rightsizing.ratings`).

Kept here, apart from both callers, so the rule is written once and a change to it
changes both ratings alike.
"""

from __future__ import annotations

import math

#: Five equal intervals, as in the AI Energy Score.
STAR_INTERVALS = 5


def _stars(fraction: float) -> int:
    """Stars for a position ``fraction`` (0..1) along a range: 0-20% -> 5 ... 80-100% -> 1.

    Rounded to 9 digits first, so 0.2 computed as 0.20000000000000004 is still 5 stars.
    """
    return max(1, STAR_INTERVALS - max(0, math.ceil(round(fraction * STAR_INTERVALS, 9)) - 1))


def stars_for_use(use: float) -> int:
    """Stars for a budget use fraction: five equal intervals of [0, budget].

    use <= 20% -> 5 stars, <= 40% -> 4, <= 60% -> 3, <= 80% -> 2, <= 100% -> 1; over
    the budget -> 0 (the test fails). Mirrors the AI Energy Score rule (lowest 20% of
    the range get 5 stars) with the budget as the range.
    """
    if math.isnan(use) or use < 0:
        raise ValueError(f"budget use must be >= 0, got {use}")
    if use > 1.0:
        return 0
    return _stars(use)


def group_stars(value: float, low: float, high: float) -> int:
    """Stars for ``value`` in a group whose metric spans ``[low, high]``.

    The AI Energy Score rule: the range is cut into five equal intervals; the lowest
    20% (the most efficient) get 5 stars, then 4, 3, 2, and the highest 20% one star.
    A boundary belongs to the better interval (exactly 20% of the way -> 5 stars),
    as in the budget rule. All values equal (``high == low``) -> 5 stars: there is
    nothing to improve on inside the group.
    """
    if not low <= value <= high:
        raise ValueError(f"{value} is outside the group's range [{low}, {high}]")
    if high <= low:
        return STAR_INTERVALS
    return _stars((value - low) / (high - low))
