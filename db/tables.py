"""The schema of the whole design (DESIGN §4): one MetaData, migrated by Alembic, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from core.states import (
    BatchStatus,
    HoldReason,
    InspectionStatus,
    JobStatus,
    OrderStatus,
    PrintMethod,
    Role,
    ShipmentStatus,
    ShippingSpeed,
)
from db.types import EncryptedAddress, EncryptedText, StrEnumType, UtcDateTime

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

ID = 40  # "ord_" + 32 characters


def _id(name: str = "id", *args, **kw) -> Column:
    return Column(name, String(ID), *args, **kw)


# ---- catalogue and partners ------------------------------------------------------------------------

products = Table(
    "products", metadata,
    _id(primary_key=True),
    Column("name", String(120), nullable=False),
    Column("product_type", String(40), nullable=False),
    Column("print_method", StrEnumType(PrintMethod), nullable=False),
    Column("template_key", String(60), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
)

variants = Table(
    "variants", metadata,
    Column("sku", String(60), primary_key=True),
    _id("product_id", ForeignKey("products.id"), nullable=False),
    Column("colour", String(40), nullable=False),
    Column("size", String(40), nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    # What one unit costs us to make (blank + print); prices reprints on the partner scorecards.
    Column("base_cost_cents", Integer, nullable=True),
)

templates = Table(
    "templates", metadata,
    Column("key", String(60), primary_key=True),
    Column("print_location", String(40), nullable=False),
    Column("current_version", Integer, nullable=False),
)

template_versions = Table(
    "template_versions", metadata,
    Column("template_key", String(60), ForeignKey("templates.key"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(80), nullable=False),
    Column("note", Text, nullable=False, default=""),
    PrimaryKeyConstraint("template_key", "version"),
)

partners = Table(
    "partners", metadata,
    Column("id", String(60), primary_key=True),
    Column("name", String(120), nullable=False),
    Column("region", String(20), nullable=False),
    Column("country", String(2), nullable=False),
    Column("city", String(80), nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("print_methods", JSON, nullable=False),
    Column("capacity_per_hour", JSON, nullable=False),
    Column("api_url", String(200), nullable=False, default=""),
    Column("active", Boolean, nullable=False, default=True),
)

partner_stock = Table(
    "partner_stock", metadata,
    Column("partner_id", String(60), ForeignKey("partners.id"), nullable=False),
    Column("sku", String(60), ForeignKey("variants.sku"), nullable=False),
    Column("on_hand", Integer, nullable=False),
    Column("reserved", Integer, nullable=False, default=0),
    Column("synced_at", UtcDateTime, nullable=True),
    PrimaryKeyConstraint("partner_id", "sku"),
    Index(None, "sku"),
)

stock_reservations = Table(
    "stock_reservations", metadata,
    _id(primary_key=True),
    _id("order_id", nullable=False, index=True),
    _id("line_id", nullable=False),
    Column("partner_id", String(60), nullable=False),
    Column("sku", String(60), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("state", String(16), nullable=False, default="held"),
    Column("created_at", UtcDateTime, nullable=False),
)

# ---- customers, orders, jobs -----------------------------------------------------------------------

customers = Table(
    "customers", metadata,
    _id(primary_key=True),
    Column("name_enc", EncryptedText, nullable=False),
    Column("email_enc", EncryptedText, nullable=False),
    Column("phone_enc", EncryptedText, nullable=True),
    Column("address_enc", EncryptedAddress, nullable=True),
    Column("email_hash", String(64), nullable=False, index=True),
    Column("email_opt_out", Boolean, nullable=False, default=False),
    Column("sms_opt_out", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("erased_at", UtcDateTime, nullable=True),
)

artworks = Table(
    "artworks", metadata,
    _id(primary_key=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("source_format", String(8), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("storage_key", String(200), nullable=False),
    Column("designer_id", String(80), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)

# Predicates of the partial indexes the dashboard counts over.
UNBATCHED = text("status = 'pending'")
AT_PARTNER = text("status IN ('submitted', 'queued', 'printing')")
OPEN_ORDER = text("status NOT IN ('delivered', 'cancelled', 'failed')")

orders = Table(
    "orders", metadata,
    _id(primary_key=True),
    Column("number", String(20), nullable=False, unique=True),
    Column("channel", String(20), nullable=False),
    Column("external_id", String(80), nullable=False),
    _id("customer_id", ForeignKey("customers.id"), nullable=False, index=True),
    Column("status", StrEnumType(OrderStatus), nullable=False),
    Column("held_from", StrEnumType(OrderStatus), nullable=True),
    Column("hold_reason", StrEnumType(HoldReason), nullable=True),
    Column("shipping_speed", StrEnumType(ShippingSpeed), nullable=False),
    Column("shipping_address_enc", EncryptedAddress, nullable=False),
    Column("total_cents", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_authorization", String(80), nullable=False),
    Column("priority", Float, nullable=False, default=0.0),
    Column("placed_at", UtcDateTime, nullable=False),
    Column("status_changed_at", UtcDateTime, nullable=False),
    Column("redriven_at", UtcDateTime, nullable=True),
    Column("version", Integer, nullable=False),
    UniqueConstraint("channel", "external_id"),
    Index(None, "status", "status_changed_at"),
    Index(None, "placed_at"),
    # Orders still in progress, counted exactly by state for the control room (final states use the index above).
    Index("ix_orders_open_status", "status", postgresql_where=OPEN_ORDER, sqlite_where=OPEN_ORDER),
)

order_lines = Table(
    "order_lines", metadata,
    _id(primary_key=True),
    _id("order_id", ForeignKey("orders.id"), nullable=False, index=True),
    Column("line_no", Integer, nullable=False),
    Column("sku", String(60), nullable=False),
    Column("quantity", Integer, nullable=False),
    _id("artwork_id", nullable=True),
    Column("texts", JSON, nullable=False),
    Column("template_key", String(60), nullable=False),
    Column("template_version", Integer, nullable=False),
    Column("unit_price_cents", Integer, nullable=False),
    Column("partner_id", String(60), nullable=True),
    Column("asset_id", String(80), nullable=True),
)

assets = Table(
    "assets", metadata,
    Column("id", String(80), primary_key=True),  # content hash of (template version, artwork, texts, options)
    Column("template_key", String(60), nullable=False),
    Column("template_version", Integer, nullable=False),
    _id("artwork_id", nullable=True),
    Column("designer_id", String(80), nullable=True),
    Column("print_file_key", String(200), nullable=False),
    Column("pdf_key", String(200), nullable=True),
    Column("preview_key", String(200), nullable=True),
    Column("dpi", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("colour_profile", String(40), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("render_ms", Integer, nullable=False),
    Column("hits", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
)

batches = Table(
    "batches", metadata,
    _id(primary_key=True),
    Column("partner_id", String(60), nullable=False, index=True),
    Column("product_type", String(40), nullable=False),
    Column("print_method", String(20), nullable=False),
    Column("region", String(20), nullable=False),
    Column("status", StrEnumType(BatchStatus), nullable=False),
    Column("target_size", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("status_changed_at", UtcDateTime, nullable=False),
    Column("redriven_at", UtcDateTime, nullable=True),
    Column("version", Integer, nullable=False),
)

print_jobs = Table(
    "print_jobs", metadata,
    _id(primary_key=True),
    _id("order_id", ForeignKey("orders.id"), nullable=False, index=True),
    _id("line_id", ForeignKey("order_lines.id"), nullable=False),
    Column("unit_index", Integer, nullable=False),
    Column("status", StrEnumType(JobStatus), nullable=False),
    Column("attempt", Integer, nullable=False, default=1),
    _id("reprint_of", nullable=True),
    Column("reason_code", String(40), nullable=True),
    Column("priority", Float, nullable=False, default=0.0),
    Column("partner_id", String(60), nullable=True),
    _id("batch_id", ForeignKey("batches.id"), nullable=True, index=True),
    Column("partner_job_id", String(80), nullable=True),
    # Set when routed, so batching groups jobs without decrypting addresses or joining the catalogue.
    Column("product_type", String(40), nullable=True),
    Column("print_method", String(20), nullable=True),
    Column("region", String(20), nullable=True),
    Column("photo_url", String(400), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("status_changed_at", UtcDateTime, nullable=False),
    Column("redriven_at", UtcDateTime, nullable=True),
    # Stamped by PrintJob.advance with the transition: when the partner got it, when it first started printing.
    Column("submitted_at", UtcDateTime, nullable=True),
    Column("started_at", UtcDateTime, nullable=True),
    Column("version", Integer, nullable=False),
    Index(None, "status", "status_changed_at"),
    Index(None, "partner_id", "partner_job_id"),
    # The partner panel's on-time window and the on-time metric read these three only (index-only on PG).
    Index(None, "submitted_at", "partner_id", "started_at"),
    # Jobs at their partners (few, recent): the partner panel's and line load's counts read only this index.
    Index("ix_print_jobs_at_partner", "partner_id", "print_method", "submitted_at", "status",
          postgresql_where=AT_PARTNER, sqlite_where=AT_PARTNER),
)

# The batch builder reads unbatched jobs a group at a time in queue order (and counts them per group).
Index("ix_print_jobs_unbatched_queue", print_jobs.c.partner_id, print_jobs.c.product_type, print_jobs.c.print_method,
      print_jobs.c.region, print_jobs.c.priority.desc(), print_jobs.c.id, postgresql_where=UNBATCHED,
      sqlite_where=UNBATCHED)

inspections = Table(
    "inspections", metadata,
    _id(primary_key=True),
    _id("job_id", ForeignKey("print_jobs.id"), nullable=False, index=True),
    _id("order_id", nullable=False, index=True),
    Column("status", StrEnumType(InspectionStatus), nullable=False),
    Column("scores", JSON, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("photo_key", String(200), nullable=True),
    Column("heatmap_key", String(200), nullable=True),
    Column("assigned_to", String(80), nullable=True),
    Column("second_assignee", String(80), nullable=True),  # double-assigned reviews measure agreement
    Column("review_reason", String(20), nullable=True),  # borderline | sampled | new_template | new_partner
    Column("aligned_key", String(200), nullable=True),
    Column("worst_region", JSON, nullable=True),
    Column("decided_by", String(80), nullable=True),
    Column("decided_at", UtcDateTime, nullable=True),
    # An inspector's verdict waits out the undo window here before it takes effect (approve | reject).
    Column("pending_verdict", String(10), nullable=True),
    Column("pending_reason", String(40), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("status_changed_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Index(None, "status", "created_at"),
)

shipments = Table(
    "shipments", metadata,
    _id(primary_key=True),
    _id("order_id", ForeignKey("orders.id"), nullable=False, index=True),
    Column("status", StrEnumType(ShipmentStatus), nullable=False),
    Column("carrier_shipment_id", String(80), nullable=True, unique=True),
    Column("carrier", String(40), nullable=True),
    Column("service", String(40), nullable=True),
    Column("rate_cents", Integer, nullable=True),
    Column("tracking_code", String(80), nullable=True, index=True),
    Column("label_key", String(200), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("status_changed_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
)

notifications = Table(
    "notifications", metadata,
    _id(primary_key=True),
    _id("order_id", nullable=False),
    Column("milestone", String(40), nullable=False),
    Column("channel", String(10), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("subject", Text, nullable=True),
    Column("preview", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("redriven_at", UtcDateTime, nullable=True),  # when the reconciler last re-queued it (message lost)
    UniqueConstraint("order_id", "milestone", "channel"),
    Index(None, "status", "created_at"),  # the reconciler's look for queued and failed rows
)

# ---- timeline, inbox, audit ------------------------------------------------------------------------

order_events = Table(
    "order_events", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    _id("order_id", nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("type", String(60), nullable=False),
    Column("source", String(80), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Index(None, "order_id", "at"),
    Index(None, "type", "at"),
)

webhook_inbox = Table(
    "webhook_inbox", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("source", String(60), nullable=False),
    Column("event_id", String(120), nullable=False),
    Column("topic", String(60), nullable=False),
    Column("body", EncryptedText, nullable=False),  # carrier and shop payloads carry addresses: PII
    Column("received_at", UtcDateTime, nullable=False),
    Column("processed_at", UtcDateTime, nullable=True),
    Column("redriven_at", UtcDateTime, nullable=True),
    Column("status", String(16), nullable=False, default="received"),
    Column("error", Text, nullable=True),
    UniqueConstraint("source", "event_id"),
    Index(None, "status", "received_at"),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("key", String(120), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

intake_rejections = Table(
    "intake_rejections", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("channel", String(20), nullable=False),
    Column("code", String(40), nullable=False),
)

staff_users = Table(
    "staff_users", metadata,
    Column("username", String(80), primary_key=True),
    Column("password_hash", String(200), nullable=False),
    Column("role", StrEnumType(Role), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_login_at", UtcDateTime, nullable=True),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("actor", String(80), nullable=False),
    Column("action", String(60), nullable=False),
    Column("target_type", String(40), nullable=False),
    Column("target_id", String(80), nullable=False),
    _id("order_id", nullable=True, index=True),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
)

settings = Table(
    "settings", metadata,
    Column("key", String(80), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(80), nullable=False),
)

feature_flags = Table(
    "feature_flags", metadata,
    Column("key", String(80), nullable=False),
    Column("scope", String(20), nullable=False),  # global | partner | template
    Column("scope_id", String(80), nullable=False, default=""),
    Column("enabled", Boolean, nullable=False, default=False),
    Column("rollout_percent", Integer, nullable=False, default=100),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("key", "scope", "scope_id"),
)

prohibited_words = Table(
    "prohibited_words", metadata,
    Column("word", String(80), primary_key=True),
    Column("added_at", UtcDateTime, nullable=False),
    Column("added_by", String(80), nullable=False),
)

queue_samples = Table(
    "queue_samples", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("queue", String(40), nullable=False),
    Column("depth", Integer, nullable=False),
    Column("delayed", Integer, nullable=False),
    Column("dead", Integer, nullable=False),
    Column("oldest_age_s", Float, nullable=True),
    Index(None, "queue", "at"),
)

alerts = Table(
    "alerts", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False),
    Column("key", String(120), nullable=False),
    _id("order_id", nullable=True),
    Column("severity", String(10), nullable=False),
    Column("message", Text, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("cleared_at", UtcDateTime, nullable=True),
    Column("acknowledged_by", String(80), nullable=True),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Column("details", JSON, nullable=True),  # what the exception inbox needs to act (e.g. a change request's text)
    Column("resolution", String(40), nullable=True),  # the action support took: reship, refund, verify_address, …
    Column("resolved_by", String(80), nullable=True),
    Column("notified_at", UtcDateTime, nullable=True),  # e-mailed to the ops address
    Index(None, "kind", "key", "cleared_at"),
)

asset_retrievals = Table(
    "asset_retrievals", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("asset_id", String(80), nullable=False),
    Column("file", String(20), nullable=False),
    Column("ms", Float, nullable=False),
    Column("bytes", BigInteger, nullable=False),
)
