"""The battery's checks, in the order they run; `python -m battery NAME` runs one."""

from __future__ import annotations

from battery import api_fuzz, lifecycle, staff_auth, uploads, webhooks
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
)}
