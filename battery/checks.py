"""The battery's checks, in the order they run; `python -m battery NAME` runs one."""

from __future__ import annotations

from battery import api_fuzz, fault_proxy, lifecycle, pii, shipping_faults, staff_auth, uploads, webhooks
from battery.framework import Check

CHECKS: dict[str, Check] = {c.name: c for c in (
    Check("webhooks-dup", webhooks.webhook_storm,
          "N events × 5 copies, shuffled, 50 concurrent, 10 % late → exactly N effects, 100 % 2xx, nothing backwards"),
    Check("webhooks-forged", webhooks.forged_webhooks,
          "forged, tampered, unsigned, replayed partner/carrier/Shopify webhooks → 100 % refused, 0 effects, logged"),
 Check("lifecycle-model", lifecycle.lifecycle_model,
          "hypothesis state machine of the order lifecycle: ≤ 1 label and partner job per attempt, legal moves only"),
 Check("uploads-hostile", uploads.hostile_uploads,
          "hostile upload corpus refused with specific codes within 2 s / 512 MB; 50 benign files normalised"),
 Check("staff-auth", staff_auth.staff_auth,
          "1,000 wrong passwords → 0 successes, locked after ≤ 10; role × page × action matrix; disabled mid-session"),
 Check("api-fuzz", api_fuzz.api_fuzz,
          "schemathesis, all phases and checks, bounded → 0 server errors, 0 schema violations"),
 Check("pii-canaries", pii.pii_canaries,
          "1,000 customers with canary strings → 0 plaintext hits in the database dump, logs, Redis and queues"),
 Check("addresses-invalid", shipping_faults.invalid_addresses,
          "1,000 addresses, 20 % unverifiable → 0 labels for those; each such customer asked exactly once"),
 Check("carrier-429", shipping_faults.carrier_429_storm,
          "300 labels; carrier limits at 20/s + a 3 s storm of 429s → 0 orders failed; < 1 % 429s after warm-up"),
 Check("partner-outage", shipping_faults.partner_outage,
          "every partner down for 60 s while batches go out → backlog visible; drained; 0 jobs lost or duplicated"),
 Check("fault-proxy", fault_proxy.fault_proxy,
          "latency, resets, blackholes, lost answers between workers and carrier/partner → 0 duplicates; asked first"),
)}

