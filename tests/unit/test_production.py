"""Production decisions: routing picks the right partner and says why, priority is monotone, batching is fair."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import PressroomError
from core.production import (
    BatchingError,
    BatchPolicy,
    Calendar,
    Deadline,
    Destination,
    GroupKey,
    JobView,
    PartnerView,
    PriorityWeights,
    ProductionSettingsInvalid,
    ReleaseReason,
    RoutingWeights,
    destination_zone,
    great_circle_km,
    group_key,
    merge,
    predicted_starts,
    priority_of,
    propose_batches,
    reprioritise,
    route,
    should_release,
    split,
    start_shifts,
)
from core.states import ShippingSpeed

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SKU = "TEE-DTG-BLK-M"
NEW_YORK = Destination(country="US", postal_code="10001", region="NY", lat=40.71, lon=-74.01)
PROPERTY = settings(max_examples=200, deadline=None)


def partner(id: str, *, lat: float, lon: float, country: str = "US", region: str = "us-east",
            methods: tuple[str, ...] = ("dtg", "sublimation", "inkjet"), capacity: float = 120,
            stock: int = 312, load: int = 0, defect_rate: float = 0.004, active: bool = True) -> PartnerView:
    return PartnerView(id=id, region=region, country=country, lat=lat, lon=lon, active=active,
                       print_methods=frozenset(methods), capacity_per_hour={m: capacity for m in methods},
                       free_stock={SKU: stock}, load_units={m: load for m in methods}, defect_rate=defect_rate)


def columbus(**overrides) -> PartnerView:
    return partner("acme-columbus", lat=39.96, lon=-83.0, **overrides)


def los_angeles(**overrides) -> PartnerView:
    overrides.setdefault("methods", ("dtg", "uv", "inkjet", "embroidery"))
    return partner("pacific-la", lat=34.05, lon=-118.24, region="us-west", **overrides)


def toronto(**overrides) -> PartnerView:
    overrides.setdefault("methods", ("dtg", "embroidery", "uv"))
    return partner("maple-toronto", lat=43.65, lon=-79.38, country="CA", region="ca", **overrides)


def berlin(**overrides) -> PartnerView:
    return partner("spree-berlin", lat=52.52, lon=13.4, country="DE", region="eu", **overrides)


def route_tee(partners, *, destination=NEW_YORK, method="dtg", quantity=1, weights=None, exclude=frozenset()):
    return route(sku=SKU, quantity=quantity, print_method=method, destination=destination, partners=partners,
                 weights=weights or RoutingWeights(), exclude=exclude)


# ---- routing -----------------------------------------------------------------------------------------


def test_nearest_partner_with_stock_wins_and_explains_itself():
    # given three equal partners in Columbus, Los Angeles and Berlin, the Columbus one half booked
    partners = [berlin(), los_angeles(), columbus(load=403)]
    # when a New York order is routed
    decision = route_tee(partners)
    # then Columbus wins, every partner is scored, and the reasons read as an ops manager would say them
    assert decision.partner_id == "acme-columbus"
    assert [c.partner_id for c in decision.candidates] == ["acme-columbus", "pacific-la", "spree-berlin"]
    assert set(decision.scores) == {"acme-columbus", "pacific-la", "spree-berlin"}
    assert decision.reasons["acme-columbus"] == (
        "766 km from destination", "stock 312", "capacity 58 % free", "defect rate 0.4 %")
    assert decision.summary.startswith("1 × TEE-DTG-BLK-M (dtg) routed to acme-columbus: 766 km")


def test_a_partner_without_enough_stock_is_excluded_with_the_reason():
    # given the nearest partner has run out of the blank and another has too few for the line
    partners = [columbus(stock=0), los_angeles(stock=2), berlin(stock=5)]
    # when a line of 3 is routed
    decision = route_tee(partners, quantity=3)
    # then only the partner with enough stock is eligible, and the others say how short they are
    assert decision.partner_id == "spree-berlin"
    assert decision.reasons["acme-columbus"] == ("only 0 in stock, 3 needed",)
    assert decision.reasons["pacific-la"] == ("only 2 in stock, 3 needed",)
    assert decision.candidate("acme-columbus").score is None
    assert route_tee([columbus(stock=0)]).reasons["acme-columbus"] == ("only 0 in stock",)


def test_inactive_and_wrong_method_partners_are_excluded_with_reasons():
    # given a partner that does no UV printing, and a UV partner that has been switched off
    partners = [columbus(), toronto(active=False), los_angeles()]
    # when a UV job is routed
    decision = route_tee(partners, method="uv")
    # then both are excluded, each with its reason, and the remaining UV partner is chosen
    assert decision.partner_id == "pacific-la"
    assert decision.reasons["acme-columbus"] == ("doesn't do uv",)
    assert decision.reasons["maple-toronto"] == ("inactive",)


def test_nobody_able_to_print_means_no_partner_and_a_sentence_saying_why():
    # given no partner can print the job
    partners = [columbus(active=False, stock=0), berlin(methods=("dtg",))]
    # when it is routed by a method nobody offers
    decision = route_tee(partners, method="embroidery")
    # then there is no choice, and the summary lists each partner's reasons
    assert decision.partner_id is None
    assert decision.scores == {}
    assert decision.summary == ("No partner can print 1 × TEE-DTG-BLK-M (embroidery) — acme-columbus: inactive, "
                                "doesn't do embroidery, only 0 in stock; spree-berlin: doesn't do embroidery.")
    assert decision.as_dict()["candidates"][0]["eligible"] is False


def test_a_full_queue_outweighs_distance_only_when_the_weights_say_so():
    # given Columbus is booked two shifts ahead and Los Angeles is idle
    partners = [columbus(load=2_000), los_angeles(load=0)]
    # when routed with the default weights, then distance still wins for a New York order
    assert route_tee(partners).partner_id == "acme-columbus"
    # when routed with an ops manager's weights that favour free capacity, then Los Angeles wins
    heavy_capacity = RoutingWeights(distance=0.3, capacity=0.6, defects=0.05, stock=0.05)
    decision = route_tee(partners, weights=heavy_capacity)
    assert decision.partner_id == "pacific-la"
    assert "capacity 0 % free" in decision.reasons["acme-columbus"]


def test_a_partner_both_full_and_misprinting_loses_to_a_far_one_with_default_weights():
    partners = [columbus(load=2_000, defect_rate=0.09), los_angeles(load=0, defect_rate=0.005)]
    assert route_tee(partners).partner_id == "pacific-la"


def test_a_bad_defect_rate_outweighs_distance_only_when_the_weights_say_so():
    # given Columbus has been misprinting 9 % of items lately and Los Angeles 0.5 %
    partners = [columbus(defect_rate=0.09), los_angeles(defect_rate=0.005)]
    # when routed with default weights, then the nearer partner still gets the job
    assert route_tee(partners).partner_id == "acme-columbus"
    # when quality is weighted up, then the careful partner wins
    decision = route_tee(partners, weights=RoutingWeights(distance=0.3, defects=0.6, capacity=0.05, stock=0.05))
    assert decision.partner_id == "pacific-la"
    assert "defect rate 9.0 %" in decision.reasons["acme-columbus"]


def test_an_excluded_partner_is_routed_around_for_a_reprint():
    # given a reprint whose earlier attempts failed twice at Columbus
    partners = [columbus(), los_angeles()]
    # when it is routed excluding Columbus
    decision = route_tee(partners, exclude=frozenset({"acme-columbus"}))
    # then the next best partner gets it, and Columbus says why it was skipped
    assert decision.partner_id == "pacific-la"
    assert decision.reasons["acme-columbus"] == ("excluded for this job",)


def test_a_customs_border_counts_as_extra_distance():
    # given Toronto is nearer to New York City than Columbus, but across a border
    partners = [columbus(), toronto()]
    # when routed with defaults, then the domestic partner wins and the border is named
    decision = route_tee(partners)
    assert decision.partner_id == "acme-columbus"
    assert any("crosses a customs border (CA → US" in r for r in decision.reasons["maple-toronto"])
    # when the border penalty is switched off, then the nearest partner wins
    assert route_tee(partners, weights=RoutingWeights(customs_border_km=0)).partner_id == "maple-toronto"
    # and inside the EU customs union there is no border: Berlin serves Vienna without a penalty
    vienna = route_tee([berlin()], destination=Destination(country="AT", postal_code="1010", region="9"))
    assert not any("customs" in r for r in vienna.reasons["spree-berlin"])


ids = st.sampled_from(["a", "b", "c", "d"]).map(lambda s: f"partner-{s}")


@PROPERTY
@given(st.lists(ids, min_size=2, max_size=4, unique=True), st.randoms(use_true_random=False))
def test_equal_partners_tie_break_on_partner_id_whatever_the_input_order(partner_ids, rnd):
    # given identical partners in the same place, listed in any order
    partners = [partner(pid, lat=40.0, lon=-80.0) for pid in partner_ids]
    rnd.shuffle(partners)
    # when routed, then the smallest id wins every time
    decision = route_tee(partners)
    assert decision.partner_id == min(partner_ids)
    assert [c.partner_id for c in decision.candidates] == sorted(partner_ids)


partner_views = st.builds(
    lambda i, lat, lon, stock, load, defects, active: partner(
        f"p{i}", lat=lat, lon=lon, stock=stock, load=load, defect_rate=defects, active=active),
    st.integers(0, 9), st.floats(-80, 80), st.floats(-180, 180), st.integers(0, 500), st.integers(0, 3_000),
    st.floats(0, 0.3), st.booleans())
weight_sets = st.builds(RoutingWeights, distance=st.floats(0.01, 5), stock=st.floats(0, 5),
                        capacity=st.floats(0, 5), defects=st.floats(0, 5))


@PROPERTY
@given(st.lists(partner_views, max_size=6, unique_by=lambda p: p.id), weight_sets, st.randoms(use_true_random=False))
def test_scores_are_normalised_and_the_choice_is_the_best_score_regardless_of_order(partners, weights, rnd):
    # given any partners and weights, when routed twice in different orders
    first = route_tee(partners, weights=weights)
    shuffled = list(partners)
    rnd.shuffle(shuffled)
    second = route_tee(shuffled, weights=weights)
    # then the decision is identical, scores lie in [0, 1], and the winner has the top score
    assert first == second
    assert all(0.0 <= s <= 1.0 for s in first.scores.values())
    if first.partner_id is not None:
        assert first.scores[first.partner_id] == max(first.scores.values())
    else:
        assert not first.scores


def test_destinations_are_located_by_state_then_postal_code_then_country():
    # given addresses with more or less detail, then each is placed by the most precise table available
    assert Destination(country="US", region="NY").located_by == "state/province NY"
    assert Destination(country="us", region="California").located_by == "state/province CA"
    assert Destination(country="CA", postal_code="V6B 1A1").located_by == "state/province BC"
    assert Destination(country="AU", postal_code="2601").located_by == "state/province ACT"
    assert Destination(country="AU", region="WA").coordinates != Destination(country="US", region="WA").coordinates
    assert Destination(country="US", postal_code="94103").located_by == "ZIP area 9"
    assert Destination(country="DE", postal_code="10115", region="BE").located_by == "country DE"
    assert Destination(country="DE", lat=52.5, lon=13.4).coordinates == (52.5, 13.4)
    assert Destination(country="ZZ").coordinates is None
    # and a country nobody can place still routes, on the other scores
    assert route_tee([columbus()], destination=Destination(country="ZZ")).partner_id == "acme-columbus"


def test_destination_zones_match_the_partner_regions():
    assert destination_zone(Destination(country="US", region="OH")) == "us-east"
    assert destination_zone(Destination(country="US", region="CO")) == "us-west"
    assert destination_zone(Destination(country="US", postal_code="98101")) == "us-west"
    assert destination_zone(Destination(country="CA", region="QC")) == "ca"
    assert destination_zone(Destination(country="NL")) == "eu"
    assert destination_zone(Destination(country="GB")) == "uk"
    assert destination_zone(Destination(country="AU")) == "apac"
    assert destination_zone(Destination(country="BR")) == "br"


def test_great_circle_distance_matches_known_city_pairs():
    assert great_circle_km((40.71, -74.01), (51.51, -0.13)) == pytest.approx(5_570, rel=0.01)  # NYC–London
    assert great_circle_km((-33.87, 151.21), (-37.81, 144.96)) == pytest.approx(714, rel=0.01)  # Sydney–Melb.
    assert great_circle_km((10.0, 20.0), (10.0, 20.0)) == 0.0


def test_unworkable_weights_are_refused_with_a_sentence():
    with pytest.raises(ProductionSettingsInvalid, match="'distance' must be a number of zero or more"):
        RoutingWeights(distance=-1)
    with pytest.raises(ProductionSettingsInvalid, match="at least one routing weight"):
        RoutingWeights(distance=0, stock=0, capacity=0, defects=0)
    with pytest.raises(ProductionSettingsInvalid, match="'express'"):
        PriorityWeights(express=-5)
    with pytest.raises(ProductionSettingsInvalid, match="1 ≤ smallest ≤ largest"):
        BatchPolicy(min_size=10, max_size=5)
    assert issubclass(ProductionSettingsInvalid, PressroomError)


# ---- priority ----------------------------------------------------------------------------------------

speeds = st.sampled_from(list(ShippingSpeed))
values = st.integers(0, 100_000)
ages = st.integers(0, 24 * 30 * 60).map(lambda minutes: timedelta(minutes=minutes))
attempts = st.integers(1, 5)
deadlines = st.one_of(st.none(), st.integers(-3 * 24, 30 * 24).map(lambda hours: timedelta(hours=hours)))
priority_weights = st.builds(PriorityWeights, express=st.floats(0, 50), high_value=st.floats(0, 50),
                             high_value_threshold_cents=st.integers(0, 50_000), deadline=st.floats(0, 50),
                             age_per_hour=st.floats(0, 5), reprint_boost=st.floats(0, 50))


def calendar_with(ship_in: timedelta | None) -> Calendar:
    if ship_in is None:
        return Calendar()
    return Calendar(deadlines=(Deadline(name="Christmas", ship_by=NOW + ship_in),))


def score(*, speed=ShippingSpeed.STANDARD, value=2_400, age=timedelta(0), attempt=1, ship_in=None,
          weights=None) -> float:
    return priority_of(shipping_speed=speed, order_value_cents=value, placed_at=NOW - age, attempt=attempt,
                       now=NOW, weights=weights or PriorityWeights(), calendar=calendar_with(ship_in)).score


@PROPERTY
@given(values, ages, attempts, deadlines, priority_weights)
def test_express_is_never_behind_standard_all_else_equal(value, age, attempt, ship_in, weights):
    kwargs = dict(value=value, age=age, attempt=attempt, ship_in=ship_in, weights=weights)
    assert score(speed=ShippingSpeed.EXPRESS, **kwargs) >= score(speed=ShippingSpeed.STANDARD, **kwargs)


@PROPERTY
@given(speeds, values, ages, ages, attempts, deadlines, priority_weights)
def test_an_older_order_is_never_behind_a_newer_one_all_else_equal(speed, value, age_a, age_b, attempt, ship_in,
                                                                   weights):
    older, newer = max(age_a, age_b), min(age_a, age_b)
    kwargs = dict(speed=speed, value=value, attempt=attempt, ship_in=ship_in, weights=weights)
    assert score(age=older, **kwargs) >= score(age=newer, **kwargs)


@PROPERTY
@given(speeds, values, ages, attempts, attempts, deadlines, priority_weights)
def test_a_reprint_is_never_behind_an_earlier_attempt_all_else_equal(speed, value, age, attempt_a, attempt_b,
                                                                     ship_in, weights):
    later, earlier = max(attempt_a, attempt_b), min(attempt_a, attempt_b)
    kwargs = dict(speed=speed, value=value, age=age, ship_in=ship_in, weights=weights)
    assert score(attempt=later, **kwargs) >= score(attempt=earlier, **kwargs)
    assert score(attempt=2, **kwargs) >= score(attempt=1, **kwargs)


@PROPERTY
@given(speeds, values, ages, attempts, st.integers(0, 30 * 24), st.integers(0, 30 * 24), priority_weights)
def test_a_nearer_ship_by_deadline_is_never_less_urgent_than_a_further_one(speed, value, age, attempt,
                                                                           hours_a, hours_b, weights):
    nearer, further = timedelta(hours=min(hours_a, hours_b)), timedelta(hours=max(hours_a, hours_b))
    kwargs = dict(speed=speed, value=value, age=age, attempt=attempt, weights=weights)
    assert score(ship_in=nearer, **kwargs) >= score(ship_in=further, **kwargs)
    assert score(ship_in=further, **kwargs) >= score(ship_in=None, **kwargs)


def test_an_express_order_beats_a_standard_one_placed_hours_earlier_with_default_weights():
    # given a standard order waiting 12 hours and an express order placed just now
    standard = score(speed=ShippingSpeed.STANDARD, age=timedelta(hours=12))
    express = score(speed=ShippingSpeed.EXPRESS, age=timedelta(0))
    # then the express order goes first
    assert express > standard


def test_a_standard_order_waiting_over_a_day_overtakes_a_fresh_express_one_so_nothing_starves():
    # the documented trade-off: express is worth 20 hours of waiting at the default 0.5 points an hour
    assert score(speed=ShippingSpeed.STANDARD, age=timedelta(hours=21)) > score(speed=ShippingSpeed.EXPRESS)
    assert score(speed=ShippingSpeed.STANDARD, age=timedelta(hours=19)) < score(speed=ShippingSpeed.EXPRESS)


def test_a_priority_explains_itself_in_components_that_add_up():
    # given an express reprint of a big order, placed 3 hours ago, 2 days before the Christmas ship-by
    result = priority_of(shipping_speed="express", order_value_cents=20_000, placed_at=NOW - timedelta(hours=3),
                         attempt=2, now=NOW, weights=PriorityWeights(), calendar=calendar_with(timedelta(days=2)))
    # then each part is visible, they add up to the score, and the reasons name them
    assert dict(result.components) == pytest.approx(
        {"express": 10.0, "high_value": 3.0, "deadline": 8 * 5 / 7, "age": 1.5, "reprint": 12.0})
    assert result.score == pytest.approx(sum(result.components.values()))
    assert result.deadline is not None and result.deadline.name == "Christmas"
    assert result.reasons[0] == "express shipping +10"
    assert "Christmas ship-by in 48 h +5.7" in result.reasons


def test_a_passed_or_distant_deadline_adds_nothing():
    assert score(ship_in=-timedelta(hours=1)) == score(ship_in=None)
    assert score(ship_in=timedelta(days=8)) == score(ship_in=None)


# ---- dynamic batching --------------------------------------------------------------------------------

POLICY = BatchPolicy(max_wait=timedelta(minutes=30), min_size=2, max_size=40, capacity_window=timedelta(minutes=15))
CAPACITY = {"acme-columbus": {"dtg": 40, "sublimation": 8}, "spree-berlin": {"dtg": 100}}  # 10, 2, 25 a batch


def job(id: str, *, partner_id="acme-columbus", product_type="tshirt", method="dtg", region="us-east",
        priority=0.0, waited=timedelta(minutes=1)) -> JobView:
    return JobView(id=id, order_id=f"ord-{id}", partner_id=partner_id, product_type=product_type,
                   print_method=method, region=region, priority=priority, ready_at=NOW - waited)


def test_jobs_group_by_partner_product_type_print_method_and_region():
    # given jobs that differ from the first in exactly one part of the key
    jobs = [job("j1"), job("j2"), job("j3", partner_id="spree-berlin"), job("j4", product_type="mug"),
            job("j5", method="sublimation"), job("j6", region="us-west")]
    # when batches are proposed
    proposals = propose_batches(jobs, partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    # then each distinct key gets its own batch, and only same-key jobs share one
    assert sorted(p.job_ids for p in proposals) == [("j1", "j2"), ("j3",), ("j4",), ("j5",), ("j6",)]
    assert group_key(jobs[0]) == GroupKey("acme-columbus", "tshirt", "dtg", "us-east")
    assert all(len({group_key(j) for j in p.jobs}) == 1 and group_key(p.jobs[0]) == p.key for p in proposals)
    assert proposals[0].key.label == "acme-columbus · mug · dtg · us-east"


def test_target_size_follows_live_capacity_within_the_policy_bounds():
    # 40/h × 15 min = 10; 8/h × 15 min = 2; 1,000/h × 15 min = 250 → 40; unknown capacity → the minimum
    assert [POLICY.target_size(c) for c in (40, 8, 1_000, 0)] == [10, 2, 40, 2]


def test_a_group_bigger_than_its_target_splits_into_full_batches_in_priority_order():
    # given 25 Columbus DTG jobs (target 10) of assorted priority
    jobs = [job(f"j{i:02}", priority=float(i % 7)) for i in range(25)]
    # when batches are proposed
    proposals = propose_batches(jobs, partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    # then there are batches of 10, 10 and 5, the most urgent jobs first, and the full ones are due on size
    assert [p.size for p in proposals] == [10, 10, 5]
    flat = [j for p in proposals for j in p.jobs]
    assert [j.priority for j in flat] == sorted((j.priority for j in jobs), reverse=True)
    assert [p.release_reason for p in proposals] == [ReleaseReason.SIZE, ReleaseReason.SIZE, None]
    assert all(p.target_size == 10 for p in proposals)


def test_equal_priority_jobs_queue_longest_waiting_first():
    jobs = [job("new", waited=timedelta(minutes=1)), job("old", waited=timedelta(minutes=20)),
            job("urgent", priority=5, waited=timedelta(0))]
    [proposal] = propose_batches(jobs, partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    assert proposal.job_ids == ("urgent", "old", "new")
    assert proposal.oldest_wait == timedelta(minutes=20)


def test_a_small_batch_is_due_on_age_once_its_oldest_job_has_waited_max_wait():
    # given three jobs for a target of 10, the oldest waiting 29 minutes
    jobs = [job("a", waited=timedelta(minutes=29)), job("b"), job("c")]
    # when proposed now, then it waits; when proposed a minute later, then it is due on age
    [waiting] = propose_batches(jobs, partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    [due] = propose_batches(jobs, partners_capacity=CAPACITY, policy=POLICY, now=NOW + timedelta(minutes=1))
    assert (waiting.release_due, waiting.release_reason) == (False, None)
    assert (due.release_due, due.release_reason, due.oldest_wait) == (True, "age", timedelta(minutes=30))


def test_should_release_prefers_size_then_age():
    wait = POLICY.max_wait
    assert should_release(10, 10, timedelta(0), POLICY) == "size"
    assert should_release(12, 10, wait, POLICY) == "size"
    assert should_release(3, 10, wait, POLICY) == "age"
    assert should_release(3, 10, wait - timedelta(seconds=1), POLICY) is None
    assert should_release(0, 10, wait * 9, POLICY) is None


def test_a_job_listed_twice_is_refused():
    with pytest.raises(BatchingError, match="Job j1 is listed twice"):
        propose_batches([job("j1"), job("j1")], partners_capacity=CAPACITY, policy=POLICY, now=NOW)


def test_predicted_starts_wait_for_the_queue_ahead_and_go_in_priority_order():
    # given 40 units already queued at Columbus DTG (one hour at 40/h) and two due batches
    low = [job(f"low{i}", priority=1.0, waited=timedelta(hours=1)) for i in range(10)]
    high = [job(f"high{i}", priority=9.0) for i in range(10)]
    proposals = propose_batches(low + high, partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    # when starts are predicted
    starts = predicted_starts(proposals, partners_capacity=CAPACITY, load={"acme-columbus": {"dtg": 40}}, now=NOW)
    # then the first job starts once the queue ahead is printed, the urgent batch first, 90 s a unit
    assert starts["high0"] == NOW + timedelta(hours=1)
    assert starts["high9"] == NOW + timedelta(hours=1, seconds=9 * 90)
    assert starts["low0"] == NOW + timedelta(hours=1, minutes=15)


def test_a_batch_not_yet_due_is_predicted_to_start_when_it_will_release_on_age():
    # given an idle line and a batch of 3 whose oldest job waited 10 of its 30 minutes
    proposals = propose_batches([job("a", waited=timedelta(minutes=10)), job("b"), job("c")],
                                partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    # when predicted with the policy, then it starts when the age rule releases it; without it, at once
    with_policy = predicted_starts(proposals, partners_capacity=CAPACITY, load={}, now=NOW, policy=POLICY)
    assert with_policy["a"] == NOW + timedelta(minutes=20)
    assert predicted_starts(proposals, partners_capacity=CAPACITY, load={}, now=NOW)["a"] == NOW


def test_raising_a_batchs_priority_moves_its_predicted_start_earlier():
    # given two due batches at Columbus, the second less urgent
    jobs = [job(f"a{i}", priority=5.0) for i in range(10)] + [job(f"b{i}", priority=1.0) for i in range(10)]
    first, second = propose_batches(jobs, partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    before = predicted_starts([first, second], partners_capacity=CAPACITY, load={}, now=NOW)
    # when an ops manager previews raising the second batch above the first
    after = predicted_starts([first, reprioritise(second, 50.0)], partners_capacity=CAPACITY, load={}, now=NOW)
    # then its jobs move earlier by exactly the first batch's print time, and the first batch's move later
    shifts = start_shifts(before, after)
    assert all(shifts[f"b{i}"] == -timedelta(minutes=15) for i in range(10))
    assert all(shifts[f"a{i}"] == timedelta(minutes=15) for i in range(10))
    assert reprioritise(reprioritise(second, 50.0), None).priority == 1.0


job_lists = st.lists(
    st.builds(lambda partner_id, method, region, priority, waited: dict(
        partner_id=partner_id, method=method, region=region, priority=float(priority),
        waited=timedelta(minutes=waited)),
        st.sampled_from(["acme-columbus", "spree-berlin", "nowhere"]), st.sampled_from(["dtg", "sublimation"]),
        st.sampled_from(["us-east", "eu"]), st.integers(0, 5), st.integers(0, 90)),
    max_size=40).map(lambda specs: [job(f"j{i:02}", **spec) for i, spec in enumerate(specs)])
loads = st.fixed_dictionaries({"acme-columbus": st.fixed_dictionaries({"dtg": st.integers(0, 100)})})


@PROPERTY
@given(job_lists, loads, st.booleans())
def test_predicted_starts_never_overlap_or_go_backwards_along_a_partners_queue(jobs, load, use_policy):
    proposals = propose_batches(jobs, partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    starts = predicted_starts(proposals, partners_capacity=CAPACITY, load=load, now=NOW,
                              policy=POLICY if use_policy else None)
    for proposal in proposals:
        capacity = CAPACITY.get(proposal.key.partner_id, {}).get(proposal.key.print_method, 0)
        if not capacity:
            assert not any(j in starts for j in proposal.job_ids)  # no capacity, no prediction
            continue
        ahead = load.get(proposal.key.partner_id, {}).get(proposal.key.print_method, 0)
        batch_starts = [starts[j] for j in proposal.job_ids]
        assert batch_starts == sorted(batch_starts)
        assert batch_starts[0] >= NOW + timedelta(hours=ahead / capacity)
    # a line prints one unit at a time: starts on one partner × method are at least a unit's time apart
    lines: dict[tuple[str, str], list[datetime]] = {}
    for proposal in proposals:
        for job_id in proposal.job_ids:
            if job_id in starts:
                lines.setdefault((proposal.key.partner_id, proposal.key.print_method), []).append(starts[job_id])
    for (partner_id, method), times in lines.items():
        unit = timedelta(hours=1) / CAPACITY[partner_id][method]
        times.sort()
        assert all(b - a >= unit - timedelta(microseconds=1) for a, b in zip(times, times[1:], strict=False))


@PROPERTY
@given(job_lists, st.data())
def test_raising_any_batchs_priority_never_delays_it(jobs, data):
    proposals = propose_batches(jobs, partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    if not proposals:
        return
    index = data.draw(st.integers(0, len(proposals) - 1))
    raised = list(proposals)
    raised[index] = reprioritise(proposals[index], proposals[index].priority + data.draw(st.floats(0, 10)))
    common = dict(partners_capacity=CAPACITY, load={}, now=NOW, policy=POLICY)
    before, after = predicted_starts(proposals, **common), predicted_starts(raised, **common)
    for job_id in proposals[index].job_ids:
        if job_id in before:
            assert after[job_id] <= before[job_id]


def test_merging_batches_from_different_groups_is_refused_with_a_clear_sentence():
    [columbus_batch, berlin_batch] = propose_batches(
        [job("c1"), job("b1", partner_id="spree-berlin", region="eu")],
        partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    with pytest.raises(BatchingError) as refused:
        merge(columbus_batch, berlin_batch, policy=POLICY)
    assert refused.value.message == (
        "Only batches for the same partner, product type, print method and destination region can be merged; "
        "these differ in partner id acme-columbus vs spree-berlin, region us-east vs eu.")
    assert refused.value.code == "batching_refused"


def test_a_merge_bigger_than_the_largest_batch_or_of_a_batch_with_itself_is_refused():
    [a, b] = propose_batches([job(f"j{i:02}") for i in range(40)],
                             partners_capacity={"acme-columbus": {"dtg": 1_000}}, policy=POLICY, now=NOW)[0:1] * 2
    with pytest.raises(BatchingError, match="a batch cannot be merged with itself"):
        merge(a, b, policy=POLICY)
    small, rest = split(a, 1, policy=POLICY)
    with pytest.raises(BatchingError, match="a batch of 41 jobs, but the largest allowed is 40"):
        merge(a, replace(small, jobs=(job("extra"),)), policy=POLICY)
    assert merge(small, rest, policy=POLICY).job_ids == a.job_ids


def test_splitting_at_either_end_is_refused():
    [batch] = propose_batches([job("a"), job("b")], partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    for at in (0, 2, -1):
        with pytest.raises(BatchingError, match="would leave an empty batch"):
            split(batch, at, policy=POLICY)


def test_a_split_part_keeps_the_ops_managers_priority_and_is_rechecked_for_release():
    [batch] = propose_batches([job(f"j{i}") for i in range(10)], partners_capacity=CAPACITY, policy=POLICY,
                              now=NOW)
    assert batch.release_reason == "size"
    head, tail = split(reprioritise(batch, 7.0), 4, policy=POLICY)
    assert (head.size, tail.size, head.priority, tail.priority) == (4, 6, 7.0, 7.0)
    assert head.release_reason is None and tail.release_reason is None


@PROPERTY
@given(job_lists, st.data())
def test_split_and_merge_keep_exactly_the_same_jobs(jobs, data):
    # given the batcher's proposals, when an ops manager splits one and merges parts back any way round
    proposals = propose_batches(jobs, partners_capacity=CAPACITY, policy=POLICY, now=NOW)
    splittable = [p for p in proposals if p.size >= 2]
    if not splittable:
        return
    batch = data.draw(st.sampled_from(splittable))
    at = data.draw(st.integers(1, batch.size - 1))
    head, tail = split(batch, at, policy=POLICY)
    merged = merge(tail, head, policy=POLICY) if data.draw(st.booleans()) else merge(head, tail, policy=POLICY)
    # then no job is lost or duplicated, and the merged batch is back in queue order
    assert Counter(head.job_ids + tail.job_ids) == Counter(batch.job_ids)
    assert head.job_ids + tail.job_ids == batch.job_ids
    assert Counter(merged.job_ids) == Counter(batch.job_ids)
    assert merged.job_ids == batch.job_ids
    assert merged.key == batch.key and merged.target_size == batch.target_size
