"""Actors on the `shipping` and `tracking` queues: buy a label once per order, apply carrier tracking events."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import dramatiq

from core.commands import Address, ApplyCarrierEvent, BuyLabel, actor_name
from core.services import shipping
from core.settings import Settings
from workers.bootstrap import container

if TYPE_CHECKING:  # easypost (and requests) load with the first label bought, not at boot
    from adapters.carrier import EasyPostCarrier


@functools.cache
def carrier() -> EasyPostCarrier:
    """One EasyPost client per process, its rate limit shared with every other worker through Redis."""
    from adapters.carrier import EasyPostCarrier

    c = container()
    settings = c.settings
    return EasyPostCarrier(settings.easypost_api_key, settings.easypost_api_base,
                           timeout_s=settings.easypost_timeout_s, redis_client=c.redis,
                           rate_per_s=settings.easypost_rate_per_s, burst=settings.easypost_burst)


def ship_from(settings: Settings) -> Address:
    return Address(name=settings.ship_from_name, line1=settings.ship_from_line1, line2=settings.ship_from_line2,
                   city=settings.ship_from_city, region=settings.ship_from_region,
                   postal_code=settings.ship_from_postal_code, country=settings.ship_from_country)


@dramatiq.actor(actor_name=actor_name(BuyLabel), queue_name=BuyLabel.QUEUE, max_retries=20, min_backoff=2_000,
                max_backoff=300_000, time_limit=5 * 60_000)
def buy_label(order_id: str) -> None:
    c = container()
    try:
        shipping.buy_label(order_id, uow=c.uow(), carrier=carrier(), store=c.store, now=c.now, new_id=c.ids.new,
                           ship_from=ship_from(c.settings))
    except shipping.CarrierUnavailable as error:
        if error.retry_after_s > 0:  # the carrier said when: retry then rather than on the backoff curve
            raise dramatiq.Retry(error.message, delay=int(error.retry_after_s * 1000) + 250) from error
        raise


@dramatiq.actor(actor_name=actor_name(ApplyCarrierEvent), queue_name=ApplyCarrierEvent.QUEUE, max_retries=10,
                min_backoff=500, max_backoff=60_000)
def apply_carrier_event(inbox_id: int) -> None:
    c = container()
    shipping.apply_carrier_event(inbox_id, uow=c.uow(), now=c.now())
