"""Spot checks: which automatically passed prints a human still looks at, reproducibly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class SpotCheckPolicy:
    """Configuration is data: ops managers tune these (defaults: the source guide's 1–2 %)."""

    rate: float = 0.015
    seed: str = "pressroom-qa"
    first_n_new: int = 5  # the first prints of a new template version or at a new partner
    adaptive_failure_rate: float = 0.05  # a partner failing more than this recently…
    adaptive_multiplier: float = 4.0  # …gets this many times the rate
    double_assign_share: float = 0.1  # of reviewed items, the share also given to a second inspector


def sample_for_review(job_id: str, *, rate: float, seed: str) -> bool:
    """Deterministic hashed sampling: the same job always gets the same answer for the same seed and rate."""
    digest = hashlib.sha256(f"{seed}:{job_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def spot_check_reason(*, job_id: str, verdict: str, policy: SpotCheckPolicy, prints_of_template_version: int,
                      prints_at_partner: int, partner_failure_rate: float) -> str | None:
    """Why a human should look at this item, or None.

    "borderline" for every doubtful automatic verdict; "new_template" / "new_partner" for the first N prints;
    "sampled" for the hashed share of automatic passes, raised for a partner that failed a lot recently.
    Automatic fails are not sampled: they go to a reprint, and their reason is on the timeline.
    """
    if verdict == "review":
        return "borderline"
    if verdict != "pass":
        return None
    if prints_of_template_version < policy.first_n_new:
        return "new_template"
    if prints_at_partner < policy.first_n_new:
        return "new_partner"
    rate = policy.rate
    if partner_failure_rate > policy.adaptive_failure_rate:
        rate = min(1.0, rate * policy.adaptive_multiplier)
    return "sampled" if sample_for_review(job_id, rate=rate, seed=policy.seed) else None


def double_assigned(inspection_id: str, *, policy: SpotCheckPolicy) -> bool:
    """A small share of reviews goes to two inspectors, to measure how often they agree."""
    return sample_for_review(f"double:{inspection_id}", rate=policy.double_assign_share, seed=policy.seed)
