"""Star ratings once the run's groups are known: the session rates every entry once,
here, and shows that one rating everywhere (summary, details, JSON, history).

The star rule within a comparable set follows Hugging Face's AI Energy Score
(:func:`~pytest_energy.stars.group_stars`): the set's ``[min, max]`` range of the
metric is cut into five equal intervals; the lowest 20% get 5 stars, the highest 20%
one star. Two guards keep it from rating noise:

* the range must mean something: a set of fewer than three variants, or one whose
  range is within measurement noise, is rated by budget use instead (and the
  right-sizing table and the legend say so);
* variants within measurement noise of each other get the same stars.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from pytest_energy.entry import Entry, RatingRule
from pytest_energy.parsers import RATING_RULE_BUDGET, RATING_RULE_GROUP
from pytest_energy.rightsizing.base import (
    METRIC_LABEL,
    RightsizingOptions,
    comparable_sets,
    finite,
    metric_of,
    metric_value,
    wh_per_1000_items,
)
from pytest_energy.stars import group_stars

#: A group rating needs at least this many measured variants (see :func:`range_problem`).
MIN_GROUP_FOR_RANGE = 3
#: Two measurements closer than this (relative) are within noise whatever their trials
#: say: trials within one run agree more closely than runs do, and a hardware counter's
#: steady-state error is about 5% even with every mitigation (Yang, Adamek, Armour,
#: SC'24: 4.9%). Variants closer than this share their stars.
NOISE_FLOOR = 0.05
#: The standard error of a median is about 1.2533 sigma / sqrt(n) for normal noise.
MEDIAN_SE_FACTOR = 1.2533


def _budget_rating(entry: Entry) -> int | None:
    """The budget-use rating the verdict gave, kept apart from the shown ``rating``.

    On a fresh entry the verdict's rating is the budget rating; once rated it is
    ``budget_rating`` (so rating twice, or with another rule, starts from the same
    place). A rating given by the group rule is never mistaken for a budget rating.
    """
    if entry.budget_rating is not None or entry.rating_rule not in (None, RatingRule.BUDGET):
        return entry.budget_rating
    return entry.rating


def _unranked(entry: Entry, rule: str) -> Entry:
    """``entry`` rated as if it had no group: by its budget, unless the rule is group."""
    budget = _budget_rating(entry)
    by_budget = rule != RATING_RULE_GROUP and budget is not None
    return entry.replace(
        budget_rating=budget,
        rating=budget if by_budget else None,
        rating_rule=RatingRule.BUDGET if by_budget else None,
        wh_per_1000_items=wh_per_1000_items(finite(entry.joules_per_item)),
        group_rank=None, group_size=None, rating_metric=None)


def relative_error(entry: Entry) -> float:
    """The relative standard error of the entry's median energy: ``1.2533 * CV /
    sqrt(trials)`` (the median's standard error for normal noise); 0 when the spread is
    unknown (one trial), which leaves :data:`NOISE_FLOOR` to judge."""
    spread, trials = entry.joules_spread, len(entry.trials)
    if spread is None or spread.cv is None or trials < 2 or not math.isfinite(spread.cv):
        return 0.0
    return MEDIAN_SE_FACTOR * spread.cv / math.sqrt(trials)


def noise(a: Entry, b: Entry) -> float:
    """The relative difference below which ``a`` and ``b`` are not told apart: two
    standard errors of their difference, never under :data:`NOISE_FLOOR`."""
    return max(NOISE_FLOOR, 2.0 * math.hypot(relative_error(a), relative_error(b)))


def within_noise(low: tuple[Entry, float], high: tuple[Entry, float]) -> bool:
    """Whether ``high``'s value exceeds ``low``'s by no more than their noise."""
    (low_entry, low_value), (high_entry, high_value) = low, high
    return high_value - low_value <= noise(low_entry, high_entry) * low_value


def range_problem(members: Sequence[Entry]) -> str | None:
    """Why a comparable set cannot be rated by its range (None when it can).

    With two variants the group rule can only give 5 stars and 1 star, however close
    they are (two variants 1.4% apart swapped those between runs); and a range within
    measurement noise places variants by noise. Such a set is rated by budget use.
    """
    if len(members) < MIN_GROUP_FOR_RANGE:
        return (f"{len(members)} variants are too few to rate by their range (a group "
                f"rating needs {MIN_GROUP_FOR_RANGE} or more)")
    metric = metric_of(members)
    points = sorted(((m, metric_value(m, metric)) for m in members), key=lambda p: p[1])
    if within_noise(points[0], points[-1]):
        low, high = points[0], points[-1]
        spread = (high[1] - low[1]) / low[1] if low[1] > 0 else 0.0
        return (f"the variants' range ({spread * 100:.1f}%) is within measurement noise "
                f"({noise(low[0], high[0]) * 100:.0f}%)")
    return None


def _tied_stars(points: Sequence[tuple[Entry, float]]) -> list[int]:
    """Group stars per point, equal for points within noise of each other: in value
    order, a point within noise of the lowest point of its run of ties shares that
    point's stars (so two variants that swap places between runs keep their stars)."""
    low = min(value for _, value in points)
    high = max(value for _, value in points)
    stars = [0] * len(points)
    anchor: tuple[Entry, float] | None = None
    for index in sorted(range(len(points)), key=lambda i: points[i][1]):
        if anchor is None or not within_noise(anchor, points[index]):
            anchor = points[index]
        stars[index] = group_stars(anchor[1], low, high)
    return stars


def _ranked(members: Sequence[Entry], rule: str) -> list[Entry]:
    """The members of one comparable set with their rank, and their group stars when
    the rule rates groups and the set has a meaningful range (see
    :func:`range_problem`); otherwise they keep what :func:`_unranked` gave them."""
    metric = metric_of(members)
    values = [metric_value(m, metric) for m in members]
    ordered = sorted(values)
    by_group = rule != RATING_RULE_BUDGET and range_problem(members) is None
    stars = _tied_stars(list(zip(members, values, strict=True))) if by_group else []
    ranked = []
    for index, (member, value) in enumerate(zip(members, values, strict=True)):
        member = member.replace(group_rank=1 + bisect.bisect_left(ordered, value),  # ties share
                                group_size=len(members), rating_metric=METRIC_LABEL[metric])
        if by_group:
            member = member.replace(rating=stars[index], rating_rule=RatingRule.GROUP)
        ranked.append(member)
    return ranked


def apply_ratings(entries: Sequence[Entry], options: RightsizingOptions) -> list[Entry]:
    """The entries rated by the run's rating rule (new entries, same order).

    Sets, on every entry:

    * ``rating`` (0-5 or None) and ``rating_rule`` (``group``, ``budget`` or None):
      ``auto`` rates the members of a comparable set with a meaningful range (three or
      more variants, a range beyond noise: :func:`range_problem`) by the group rule
      (:func:`~pytest_energy.stars.group_stars` on the set's metric, ties within noise
      sharing their stars) and every other test by its budget use; ``budget`` keeps the
      budget rating everywhere; ``group`` rates only sets with a meaningful range (the
      others have no range to be placed in: unrated).
    * ``budget_rating``: the budget-use rating the verdict gave (kept, so applying the
      ratings twice, or with another rule, starts from the same place).
    * ``group_rank`` (1 = least energy in its set; ties share a rank), ``group_size``
      and ``rating_metric`` (``"J/item"`` or ``"J/call"``) for measured entries, None
      for the others.
    * ``wh_per_1000_items`` (None without items).

    Only valid measurements (:attr:`Entry.is_measured`) take part in a group's range.
    """
    rated = [_unranked(entry, options.rating_rule) for entry in entries]
    position = {id(entry): index for index, entry in enumerate(rated)}
    for members in comparable_sets(rated).values():
        for member, ranked in zip(members, _ranked(members, options.rating_rule), strict=True):
            rated[position[id(member)]] = ranked
    return rated
