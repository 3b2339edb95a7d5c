"""Settings: read once from the environment at a composition root, then passed around as a value."""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from core.states import JobStatus, OrderStatus

log = logging.getLogger(__name__)

DEFAULT_DEADLINES_S: Mapping[OrderStatus, float] = MappingProxyType({
    OrderStatus.ACCEPTED: 60.0,
    OrderStatus.RENDERING: 300.0,
    OrderStatus.READY_FOR_PRODUCTION: 2700.0,  # longer than a batch's maximum wait
    OrderStatus.IN_PRODUCTION: 4 * 3600.0,
    OrderStatus.QA: 600.0,
    OrderStatus.READY_TO_SHIP: 600.0,
    OrderStatus.LABEL_CREATED: 24 * 3600.0,
})
"""How long an order may sit in a status before the reconciler sends its stage message again."""

DEFAULT_JOB_DEADLINES_S: Mapping[JobStatus, float] = MappingProxyType({
    JobStatus.PENDING: 2700.0,  # routed, waiting for a batch: a batch's maximum wait and some
    JobStatus.BATCHED: 2700.0,
    JobStatus.SUBMITTED: 900.0,  # the partner should have queued it
    JobStatus.QUEUED: 4 * 3600.0,  # the on-time start target
    JobStatus.PRINTING: 4 * 3600.0,
    JobStatus.PRINTED: 600.0,  # QA should have inspected it
})
"""How long a print job may sit in a status before the monitor calls it stuck."""

_LAG = {"oldest_age_s": (300.0, 900.0), "dead_lettered": (0.0, 10.0)}
DEFAULT_QUEUE_THRESHOLDS: Mapping[str, Mapping[str, tuple[float, float]]] = MappingProxyType({
    "render": {"depth": (50.0, 250.0), **_LAG},  # renders take seconds each: a short queue is already lag
    "production": {"depth": (200.0, 1000.0), **_LAG},
    "webhooks": {"depth": (500.0, 2500.0), "oldest_age_s": (60.0, 300.0), "dead_lettered": (0.0, 10.0)},
    "qa": {"depth": (50.0, 250.0), **_LAG},
    "notify": {"depth": (500.0, 2500.0), **_LAG},
    "shipping": {"depth": (100.0, 500.0), **_LAG},
    "tracking": {"depth": (500.0, 2500.0), "oldest_age_s": (120.0, 600.0), "dead_lettered": (0.0, 10.0)},
})
"""Per stage queue, (warning, critical) limits the monitor alerts above: messages waiting, age in seconds of
the oldest waiting one, and messages dead-lettered within the error window. Staff override them (settings row
`monitor_thresholds`)."""


DEFAULT_METRIC_TARGETS: Mapping[str, Mapping[str, str | float]] = MappingProxyType({
    # compare: below (value < goal), at_most (≤) or at_least (≥); past `warn` but within the goal is "at risk".
    "validation_errors": {"compare": "below", "goal": 0.01, "warn": 0.008},  # share of checkouts refused
    "asset_generation": {"compare": "at_least", "goal": 1.0, "warn": 1.0},  # share of renders that succeeded
    "retrieval_latency_p95": {"compare": "below", "goal": 200.0, "warn": 150.0},  # ms
    "queue_lag_p95": {"compare": "below", "goal": 300.0, "warn": 240.0},  # seconds, worst stage queue
    "queue_lag_p99": {"compare": "below", "goal": 300.0, "warn": 240.0},
    "on_time_start": {"compare": "at_least", "goal": 0.95, "warn": 0.97},  # share of jobs submitted in time
    "defect_rate": {"compare": "below", "goal": 0.005, "warn": 0.004},  # share of inspected items failed
    "label_success": {"compare": "at_least", "goal": 0.99, "warn": 0.995},  # share of label attempts bought
    "notification_delivery": {"compare": "at_least", "goal": 0.99, "warn": 0.995},  # share handed over
})
"""The source guide's success metrics: the line each must stay on, and where it turns "at risk". Staff
override them (settings row `metric_targets`, same shape). The guide's notification metric is an open rate,
which needs the provider's open tracking; delivery is what Pressroom itself can vouch for."""

def _dev_key(label: str) -> str:
    # Deterministic, public, for the embedded demo only: production refuses to start without real keys.
    return base64.urlsafe_b64encode(hashlib.sha256(f"pressroom-dev-{label}".encode()).digest()).decode()


def _pairs(raw: str) -> Mapping[str, str]:
    """"id=value,id2=value2" → {"id": "value", …} (per-partner keys and secrets from one variable)."""
    pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
    return MappingProxyType({k.strip(): v.strip() for k, v in pairs})


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    environment: str = "dev"
    database_url: str = "sqlite:///var/pressroom.db"
    redis_url: str = "redis://127.0.0.1:6390/0"
    pii_keys: tuple[str, ...] = ()
    blind_index_key: str = ""
    shopify_webhook_secret: str = "shpss_dev_secret"
    asset_url_secret: str = ""
    payment_decline_rate: float = 0.0
    object_store_dir: str = "var/objects"
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    api_url: str = "http://127.0.0.1:8000"
    dashboard_url: str = "http://127.0.0.1:8501"
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int = 9191
    broker_heartbeat_timeout_ms: int = 10_000
    broker_maintenance_chance: int = 100_000  # per million broker commands: 10 %
    reconcile_every_s: float = 5.0
    qa_undo_window_s: float = 15.0  # an inspector's verdict waits this long (undo) before it takes effect
    qa_review_first_prints: int = 5  # the first N prints of a new template version / at a new partner go to a human
    partner_api_base: str = "http://127.0.0.1:8100"
    partner_api_keys: Mapping[str, str] = field(default_factory=dict)
    partner_webhook_secrets: Mapping[str, str] = field(default_factory=dict)
    partner_rate_per_s: float = 20.0
    partner_timeout_s: float = 10.0  # per partner API call; an unanswered submit is then looked up, never resent blind
    inventory_sync_every_s: float = 60.0
    batch_max_wait_s: float = 1800.0
    stage_deadlines_s: Mapping[OrderStatus, float] = field(default_factory=lambda: DEFAULT_DEADLINES_S)
    max_quantity: int = 100
    login_attempts_before_lockout: int = 5
    login_lockout_s: float = 300.0
    easypost_api_key: str = "EZTK_dev_pressroom"
    easypost_api_base: str = "http://127.0.0.1:8200/v2"
    easypost_webhook_secret: str = "whsec_dev_easypost"
    easypost_timeout_s: float = 10.0
    easypost_rate_per_s: float = 5.0
    easypost_burst: int = 10  # requests the shared limiter lets through at once; keep under the carrier's burst
    no_scan_days: float = 3.0
    ship_from_name: str = "Pressroom Fulfilment"
    ship_from_line1: str = "55 Water St"
    ship_from_line2: str = ""
    ship_from_city: str = "Brooklyn"
    ship_from_region: str = "NY"
    ship_from_postal_code: str = "11201"
    ship_from_country: str = "US"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_sender: str = "Pressroom <orders@pressroom.dev>"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    sms_url: str = "http://127.0.0.1:8027"
    sms_api_key: str = "sms_dev_key"
    self_service_url: str = "http://127.0.0.1:8000"  # where customers' status links point (default: api_url)
    tracking_url: str = "http://127.0.0.1:8200/track/{code}"  # a parcel's public page; {code} and {carrier}
    customer_link_secret: str = ""  # signs customers' self-service links (core.signing)
    customer_link_days: float = 90.0  # how long a link in an e-mail keeps working
    ops_email: str = "ops@pressroom.dev"  # where new monitor alerts are e-mailed
    monitor_every_s: float = 30.0
    monitor_error_window_s: float = 900.0  # dead-lettered messages counted over this window
    job_deadlines_s: Mapping[JobStatus, float] = field(default_factory=lambda: DEFAULT_JOB_DEADLINES_S)
    queue_thresholds: Mapping[str, Mapping[str, tuple[float, float]]] = field(
        default_factory=lambda: DEFAULT_QUEUE_THRESHOLDS)

    def partner_api_key(self, partner_id: str) -> str:
        return self.partner_api_keys.get(partner_id) or f"pk_dev_{partner_id}"

    def partner_webhook_secret(self, partner_id: str) -> str:
        return self.partner_webhook_secrets.get(partner_id) or f"whsec_dev_{partner_id}"

    def partner_url(self, partner_id: str, api_url: str = "") -> str:
        """The partner's API base: its stored URL, or the (sim) base with the partner's path."""
        return api_url or f"{self.partner_api_base.rstrip('/')}/partners/{partner_id}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping (os.environ at the composition roots).

        Raises:
            ValueError: production without encryption keys, or a malformed number.
        """
        environment = env.get("PRESSROOM_ENV", "dev")
        keys = tuple(k.strip() for k in env.get("PRESSROOM_PII_KEYS", "").split(",") if k.strip())
        blind = env.get("PRESSROOM_BLIND_INDEX_KEY", "")
        required = ("PRESSROOM_PII_KEYS", "PRESSROOM_BLIND_INDEX_KEY", "PRESSROOM_ASSET_URL_SECRET",
                    "PARTNER_API_KEYS", "PARTNER_WEBHOOK_SECRETS",
                    "PRESSROOM_CUSTOMER_LINK_SECRET")
        missing = [name for name in required if not env.get(name)]
        if environment == "production" and missing:
            raise ValueError(f"{', '.join(missing)} must be set in production (the dev defaults are public)")
        if not keys:
            keys = (_dev_key("pii"),)
        if not blind:
            blind = _dev_key("blind-index")
        deadlines = dict(DEFAULT_DEADLINES_S)
        for status in OrderStatus:
            raw = env.get(f"PRESSROOM_DEADLINE_{status.upper()}_S")
            if raw:
                deadlines[status] = float(raw)
        job_deadlines = dict(DEFAULT_JOB_DEADLINES_S)
        for job_status in DEFAULT_JOB_DEADLINES_S:
            raw = env.get(f"PRESSROOM_JOB_DEADLINE_{job_status.upper()}_S")
            if raw:
                job_deadlines[job_status] = float(raw)
        defaults = cls()
        return cls(
            environment=environment,
            database_url=env.get("DATABASE_URL", defaults.database_url),
            redis_url=env.get("REDIS_URL", defaults.redis_url),
            pii_keys=keys,
            blind_index_key=blind,
            shopify_webhook_secret=env.get("SHOPIFY_WEBHOOK_SECRET", defaults.shopify_webhook_secret),
            asset_url_secret=env.get("PRESSROOM_ASSET_URL_SECRET") or _dev_key("asset-urls"),
            payment_decline_rate=float(env.get("PAYMENT_DECLINE_RATE", defaults.payment_decline_rate)),
            object_store_dir=env.get("OBJECT_STORE_DIR", defaults.object_store_dir),
            s3_bucket=env.get("S3_BUCKET", ""),
            s3_endpoint_url=env.get("S3_ENDPOINT_URL", ""),
            s3_region=env.get("S3_REGION", defaults.s3_region),
            s3_access_key=env.get("S3_ACCESS_KEY_ID", ""),
            s3_secret_key=env.get("S3_SECRET_ACCESS_KEY", ""),
            api_url=env.get("PRESSROOM_API_URL", defaults.api_url),
            dashboard_url=env.get("PRESSROOM_DASHBOARD_URL", defaults.dashboard_url),
            prometheus_host=env.get("PROMETHEUS_HOST", defaults.prometheus_host),
            prometheus_port=int(env.get("PROMETHEUS_PORT", defaults.prometheus_port)),
            broker_heartbeat_timeout_ms=int(env.get("BROKER_HEARTBEAT_TIMEOUT_MS",
                                                    defaults.broker_heartbeat_timeout_ms)),
            broker_maintenance_chance=int(env.get("BROKER_MAINTENANCE_CHANCE",
                                                  defaults.broker_maintenance_chance)),
            reconcile_every_s=float(env.get("RECONCILE_EVERY_S", defaults.reconcile_every_s)),
            qa_undo_window_s=float(env.get("QA_UNDO_WINDOW_S", defaults.qa_undo_window_s)),
            qa_review_first_prints=int(env.get("QA_REVIEW_FIRST_PRINTS", defaults.qa_review_first_prints)),
            partner_api_base=env.get("PARTNER_API_BASE", defaults.partner_api_base),
            partner_api_keys=_pairs(env.get("PARTNER_API_KEYS", "")),
            partner_webhook_secrets=_pairs(env.get("PARTNER_WEBHOOK_SECRETS", "")),
            partner_rate_per_s=float(env.get("PARTNER_RATE_PER_S", defaults.partner_rate_per_s)),
            partner_timeout_s=float(env.get("PARTNER_TIMEOUT_S", defaults.partner_timeout_s)),
            inventory_sync_every_s=float(env.get("INVENTORY_SYNC_EVERY_S", defaults.inventory_sync_every_s)),
            batch_max_wait_s=float(env.get("BATCH_MAX_WAIT_S", defaults.batch_max_wait_s)),
            stage_deadlines_s=MappingProxyType(deadlines),
            job_deadlines_s=MappingProxyType(job_deadlines),
            easypost_api_key=env.get("EASYPOST_API_KEY", defaults.easypost_api_key),
            easypost_api_base=env.get("EASYPOST_API_BASE", defaults.easypost_api_base),
            easypost_webhook_secret=env.get("EASYPOST_WEBHOOK_SECRET", defaults.easypost_webhook_secret),
            easypost_timeout_s=float(env.get("EASYPOST_TIMEOUT_S", defaults.easypost_timeout_s)),
            easypost_rate_per_s=float(env.get("EASYPOST_RATE_PER_S", defaults.easypost_rate_per_s)),
            easypost_burst=int(env.get("EASYPOST_BURST", defaults.easypost_burst)),
            no_scan_days=float(env.get("NO_SCAN_DAYS", defaults.no_scan_days)),
            ship_from_name=env.get("SHIP_FROM_NAME", defaults.ship_from_name),
            ship_from_line1=env.get("SHIP_FROM_LINE1", defaults.ship_from_line1),
            ship_from_line2=env.get("SHIP_FROM_LINE2", defaults.ship_from_line2),
            ship_from_city=env.get("SHIP_FROM_CITY", defaults.ship_from_city),
            ship_from_region=env.get("SHIP_FROM_REGION", defaults.ship_from_region),
            ship_from_postal_code=env.get("SHIP_FROM_POSTAL_CODE", defaults.ship_from_postal_code),
            ship_from_country=env.get("SHIP_FROM_COUNTRY", defaults.ship_from_country),
            smtp_host=env.get("SMTP_HOST", defaults.smtp_host),
            smtp_port=int(env.get("SMTP_PORT", defaults.smtp_port)),
            smtp_sender=env.get("SMTP_SENDER", defaults.smtp_sender),
            smtp_username=env.get("SMTP_USERNAME", ""),
            smtp_password=env.get("SMTP_PASSWORD", ""),
            smtp_starttls=env.get("SMTP_STARTTLS", "").lower() in ("1", "true", "yes"),
            sms_url=env.get("SMS_URL", defaults.sms_url),
            sms_api_key=env.get("SMS_API_KEY", defaults.sms_api_key),
            self_service_url=env.get("PRESSROOM_SELF_SERVICE_URL") or env.get("PRESSROOM_API_URL", defaults.api_url),
            tracking_url=env.get("TRACKING_URL", defaults.tracking_url),
            customer_link_secret=env.get("PRESSROOM_CUSTOMER_LINK_SECRET") or _dev_key("customer-links"),
            customer_link_days=float(env.get("CUSTOMER_LINK_DAYS", defaults.customer_link_days)),
            ops_email=env.get("OPS_EMAIL", defaults.ops_email),
            monitor_every_s=float(env.get("MONITOR_EVERY_S", defaults.monitor_every_s)),
            monitor_error_window_s=float(env.get("MONITOR_ERROR_WINDOW_S", defaults.monitor_error_window_s)),
        )
