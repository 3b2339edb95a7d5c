"""Customers' signed links: only our signature opens an order's page, until it expires; every e-mail has one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.notifications import (
    Channel,
    MessageContext,
    Milestone,
    customer_link,
    notification_links,
    render_message,
)
from core.settings import Settings
from core.signing import LinkCheck, check_customer_token, customer_token, signed_customer_path
from tests.conftest import TEST_KEYS

SECRET = "test-customer-link-secret"
NOW = 1_800_000_000
order_ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=40)


@given(order_id=order_ids, lifetime=st.integers(min_value=0, max_value=10**9))
def test_a_token_opens_its_own_order_until_it_expires(order_id, lifetime):
    token = customer_token(SECRET, order_id, expires=NOW + lifetime)
    assert check_customer_token(SECRET, order_id, token, now=NOW) == LinkCheck.VALID
    assert check_customer_token(SECRET, order_id, token, now=NOW + lifetime + 1) == LinkCheck.EXPIRED


@settings(max_examples=300)
@given(order_id=order_ids, position=st.integers(min_value=0), replacement=st.sampled_from("0123456789aZ_-."))
def test_any_change_to_a_token_makes_it_invalid(order_id, position, replacement):
    token = customer_token(SECRET, order_id, expires=NOW + 3600)
    i = position % len(token)
    tampered = token[:i] + replacement + token[i + 1:]
    if tampered == token:
        return
    assert check_customer_token(SECRET, order_id, tampered, now=NOW) == LinkCheck.INVALID


@given(one=order_ids, other=order_ids)
def test_a_token_never_opens_another_order(one, other):
    if one == other:
        return
    token = customer_token(SECRET, one, expires=NOW + 3600)
    assert check_customer_token(SECRET, other, token, now=NOW) == LinkCheck.INVALID


def test_a_later_expiry_written_into_an_expired_token_reads_as_tampered_not_expired():
    # given a link that expired, whose customer edits the expiry to next year
    expired = customer_token(SECRET, "ord_1", expires=NOW - 1)
    signature = expired.split(".", 1)[1]
    # then it does not open, and it is called invalid (not merely expired)
    assert check_customer_token(SECRET, "ord_1", expired, now=NOW) == LinkCheck.EXPIRED
    assert check_customer_token(SECRET, "ord_1", f"{NOW + 10**7}.{signature}", now=NOW) == LinkCheck.INVALID


@pytest.mark.parametrize("token", ["", ".", "123", "123.", ".abc", "abc.def", "-5.abc", "1" * 13 + ".abc",
                                   "123." + "a" * 65, "0123.abc"])
def test_malformed_tokens_are_invalid(token):
    assert check_customer_token(SECRET, "ord_1", token, now=NOW) == LinkCheck.INVALID


def test_another_secret_signs_a_token_that_does_not_open_the_page():
    token = customer_token("someone-else", "ord_1", expires=NOW + 60)
    assert check_customer_token(SECRET, "ord_1", token, now=NOW) == LinkCheck.INVALID


def test_the_link_path_carries_the_order_and_its_token():
    path = signed_customer_path(SECRET, "ord_1", expires=NOW + 60)
    parts = urlsplit(path)
    assert parts.path == "/orders/ord_1"
    [token] = parse_qs(parts.query)["t"]
    assert check_customer_token(SECRET, "ord_1", token, now=NOW) == LinkCheck.VALID


# ---- settings: the secret ------------------------------------------------------------------------------------


PRODUCTION = {**TEST_KEYS, "PRESSROOM_ENV": "production", "PRESSROOM_ASSET_URL_SECRET": "a",
              "PARTNER_API_KEYS": "acme=k", "PARTNER_WEBHOOK_SECRETS": "acme=s"}


def test_production_refuses_to_start_without_a_customer_link_secret():
    with pytest.raises(ValueError, match="PRESSROOM_CUSTOMER_LINK_SECRET"):
        Settings.from_env(PRODUCTION)
    settings = Settings.from_env(PRODUCTION | {"PRESSROOM_CUSTOMER_LINK_SECRET": "real-secret"})
    assert settings.customer_link_secret == "real-secret"


def test_the_embedded_default_signs_with_a_dev_secret_and_a_90_day_lifetime():
    settings = Settings.from_env(TEST_KEYS)
    assert settings.customer_link_secret and settings.customer_link_days == 90
    assert Settings.from_env(TEST_KEYS | {"CUSTOMER_LINK_DAYS": "7"}).customer_link_days == 7


# ---- every customer message carries the signed link ----------------------------------------------------------


def test_every_customer_message_carries_the_signed_link_to_the_order_page():
    # given the links as the notify worker builds them
    settings = Settings.from_env(TEST_KEYS | {"PRESSROOM_SELF_SERVICE_URL": "https://orders.example.com/"})
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    links = notification_links(settings, now=now)
    status_url = links.status("ord_42")
    assert status_url == customer_link(settings, "ord_42", now=now)
    parts = urlsplit(status_url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "orders.example.com", "/orders/ord_42")
    [token] = parse_qs(parts.query)["t"]
    # then it opens the order for 90 days and no longer
    assert check_customer_token(settings.customer_link_secret, "ord_42", token,
                                now=(now + timedelta(days=89)).timestamp()) == LinkCheck.VALID
    assert check_customer_token(settings.customer_link_secret, "ord_42", token,
                                now=(now + timedelta(days=91)).timestamp()) == LinkCheck.EXPIRED
    # and every milestone's e-mail (text and HTML) and text message includes it
    context = MessageContext(order_number="PR-42", first_name="Ada", status_url=status_url,
                             tracking_url="https://track.example/1Z", tracking_code="1Z", carrier="USPS")
    for milestone in Milestone:
        email = render_message(milestone, Channel.EMAIL, context)
        assert status_url in email.text, milestone
        assert status_url.replace("&", "&amp;") in email.html or status_url in email.html, milestone
        assert "t=" not in email.preview, milestone  # the preview line is stored in the clear: no token
        if milestone != Milestone.SHIPPED:  # the shipped text message links the tracking page instead
            assert status_url in render_message(milestone, Channel.SMS, context).text, milestone
