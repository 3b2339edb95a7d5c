"""Text messages through an HTTP SMS provider (`POST {base}/v1/messages`); the SMS sim speaks the same API."""

from __future__ import annotations

import httpx

from core.notifications import DeliveryUnknown, Message, NotDelivered


class HttpSms:
    """Implements `core.notifications.SmsSender`: JSON `{to, body}` with a bearer key and an Idempotency-Key,
    so a provider that honours it absorbs a repeat of the same message."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport,
                                   headers={"Authorization": f"Bearer {api_key}"})

    def send(self, *, to: str, message: Message, idempotency_key: str) -> None:
        """Hand one text to the provider.

        Raises:
            NotDelivered: unreachable, or the provider answered with an error (it did not take the message).
            DeliveryUnknown: the request went out but no answer came back in time.
        """
        try:
            response = self.client.post("/v1/messages", json={"to": to, "body": message.text.strip()},
                                        headers={"Idempotency-Key": idempotency_key})
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise NotDelivered(f"SMS provider unreachable: {error}") from error
        except httpx.HTTPError as error:
            raise DeliveryUnknown(f"SMS provider did not answer: {type(error).__name__}: {error}") from error
        if response.status_code >= 400:
            # Only the status: a provider's error body may echo the phone number (PII stays out of errors).
            raise NotDelivered(f"SMS provider refused the message: HTTP {response.status_code}")

    def close(self) -> None:
        self.client.close()
