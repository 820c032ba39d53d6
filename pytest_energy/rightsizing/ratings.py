"""Star ratings once the run's groups are known: the session rates every entry once,
here, and shows that one rating everywhere (summary, details, JSON, history).

The star rule within a comparable set follows Hugging Face's AI Energy Score
(:func:`~pytest_energy.stars.group_stars`): the set's ``[min, max]`` range of the
metric is cut into five equal intervals; the lowest 20% get 5 stars, the highest 20%
one star. A set whose values are all equal gets 5 stars everywhere.
"""

from __future__ import annotations

import bisect
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


def _ranked(members: Sequence[Entry], rule: str) -> list[Entry]:
    """The members of one comparable set with their rank, and their group stars when
    the rule rates groups and the set has a range (two or more members)."""
    metric = metric_of(members)
    values = [metric_value(m, metric) for m in members]
    low, high = min(values), max(values)
    ordered = sorted(values)
    by_group = len(members) >= 2 and rule != RATING_RULE_BUDGET
    ranked = []
    for member, value in zip(members, values, strict=True):
        member = member.replace(group_rank=1 + bisect.bisect_left(ordered, value),  # ties share
                                group_size=len(members), rating_metric=METRIC_LABEL[metric])
        if by_group:
            member = member.replace(rating=group_stars(value, low, high),
                                    rating_rule=RatingRule.GROUP)
        ranked.append(member)
    return ranked


def apply_ratings(entries: Sequence[Entry], options: RightsizingOptions) -> list[Entry]:
    """The entries rated by the run's rating rule (new entries, same order).

    Sets, on every entry:

    * ``rating`` (0-5 or None) and ``rating_rule`` (``group``, ``budget`` or None):
      ``auto`` rates the members of a comparable set of two or more by the group rule
      (:func:`~pytest_energy.stars.group_stars` on the set's metric) and a lone test by
      its budget use; ``budget`` keeps the budget rating everywhere; ``group`` rates
      only sets of two or more (a lone test has no range to be placed in: unrated).
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
