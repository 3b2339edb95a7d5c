"""FastAPI application: storefront intake, Shopify webhooks, health."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import mimetypes
import time

from fastapi import FastAPI, File, Form, Header, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api import carrier, problems, selfservice, shopify
from api.deps import Services, build_services
from api.problems import problem, problem_responses
from api.schemas import (
    NO_NUL_SCHEMA,
    PARTNER_EVENT_BODY,
    SHOPIFY_ORDER_BODY,
    UPLOAD_SCHEMA,
    ArtworkOut,
    OrderIn,
    OrderOut,
    WebhookAck,
    contains_nul,
)
from core.artwork import DEFAULT_MAX_BYTES, ArtworkRefused, normalise_artwork
from core.commands import ApplyPartnerEvent
from core.errors import Problem
from core.services.intake import place_order
from core.signing import ASSET_FILES, verify_asset_signature

log = logging.getLogger(__name__)
MAX_UPLOAD_BYTES = DEFAULT_MAX_BYTES
REPLAYED = {200: {"model": OrderOut, "description": "The order this request (or this Shopify order) placed before"}}
# OpenAPI links (the stateful fuzz follows them; a client may read them as documentation): an uploaded artwork's id
# goes in an order line, and an order placed again under its channel and external_id is answered with the first.
ARTWORK_LINKS = {201: {"links": {"OrderWithThisArtwork": {
    "operationRef": "#/paths/~1v1~1orders/post", "requestBody": {"lines": [{"artwork_id": "$response.body#/id"}]},
    "description": "An order whose first line prints this artwork."}}}}
ORDER_LINKS = {201: {"links": {"SameOrderAgain": {
    "operationRef": "#/paths/~1v1~1orders/post",
    "requestBody": {"channel": "$request.body#/channel", "external_id": "$request.body#/external_id"},
    "description": "The same shop order sent again: answered 200 with the order already placed."}}}}
ASSET_MEDIA = {200: {"description": "The file", "content": {"image/png": {"schema": {"type": "string",
                                                                                    "format": "binary"}},
                                                            "application/pdf": {"schema": {"type": "string",
                                                                                          "format": "binary"}}}}}


def create_app(services: Services | None = None) -> FastAPI:
    app = FastAPI(title="Pressroom API", version="1.0",
                  description="Order intake for the Pressroom print-on-demand control room.")
    app.state.services = services or build_services()
    problems.install(app)
    app.include_router(carrier.router)
    app.include_router(selfservice.router)

    @app.get("/healthz", responses={503: {"description": "The database or Redis does not answer",
                                          "content": {"application/json": {}}}})
    def healthz() -> JSONResponse:
        """Database and Redis both answer, or 503 naming the one that doesn't."""
        svc: Services = app.state.services
        checks = {}
        try:
            with svc.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:  # reported, not swallowed: the body says what failed
            checks["database"] = f"down: {type(error).__name__}"
        if svc.redis is not None:
            try:
                svc.redis.ping()
                checks["redis"] = "ok"
            except Exception as error:
                checks["redis"] = f"down: {type(error).__name__}"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if healthy else "degraded", **checks}, status_code=200 if healthy else 503)

    @app.post("/v1/artwork", status_code=201, response_model=ArtworkOut,
              responses={**ARTWORK_LINKS, **problem_responses(422)})
    async def upload_artwork(file: UploadFile = File(..., json_schema_extra=UPLOAD_SCHEMA),
                             designer_id: str | None = Form(None, max_length=80, json_schema_extra=NO_NUL_SCHEMA),
                             sku: str | None = Form(None, max_length=60, json_schema_extra=NO_NUL_SCHEMA)):
        """Upload a PNG, JPEG or TIFF; it is checked by content, normalised and stored."""
        svc: Services = app.state.services
        if contains_nul([designer_id or "", sku or ""]):
            return problem(422, "invalid-request", "A form field holds a NUL (\\x00) character.",
                           [Problem(field="designer_id" if contains_nul(designer_id or "") else "sku", code="invalid",
                                    message="must not contain NUL (\\x00) characters")])
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        with svc.uow() as uow:
            variants = uow.catalogue.variants([sku]) if sku else {}
            limit = (variants[sku].template.max_artwork_pixels if sku in variants
                     else uow.catalogue.max_artwork_pixels())
        try:
            art = normalise_artwork(data, max_pixels=limit, max_bytes=MAX_UPLOAD_BYTES)
        except ArtworkRefused as refused:
            log.info("artwork refused: %s", refused.code)
            return problem(422, "artwork-refused", refused.message,
                           [Problem(field="file", code=refused.code, message=refused.message)])
        artwork_id = svc.ids.new("art")
        key = f"artwork/{artwork_id}.png"
        svc.store.put(key, art.data, content_type="image/png")
        with svc.uow() as uow:
            uow.artworks.add(id=artwork_id, sha256=art.sha256, width=art.width, height=art.height,
                             source_format=art.source_format, bytes=len(art.data), storage_key=key,
                             designer_id=designer_id, created_at=svc.now())
            uow.commit()
        return ArtworkOut(id=artwork_id, sha256=art.sha256, width=art.width, height=art.height,
                          format=art.source_format, bytes=len(art.data))

    @app.post("/v1/orders", status_code=201, response_model=OrderOut,
              responses={**ORDER_LINKS, **REPLAYED, **problem_responses(402, 409, 422)})
    async def create_order(body: OrderIn, request: Request,
                           idempotency_key: str | None = Header(None, max_length=120)):
        """Accept an order atomically (validation, payment, reservation, timeline, render message)."""
        svc: Services = app.state.services
        raw = await request.body()
        digest = hashlib.sha256(raw).hexdigest()
        result = await run_in_threadpool(  # blocking database work stays off the event loop
            place_order, body.to_command(), uow=svc.uow(), payments=svc.payments, ids=svc.ids, now=svc.now(),
            source=f"channel:{body.channel}", max_quantity=svc.settings.max_quantity,
            idempotency_key=idempotency_key, request_hash=digest)
        payload = result.order if isinstance(result.order, dict) else result.order.as_response()
        return JSONResponse(payload, status_code=201 if result.created else 200)

    @app.post("/webhooks/shopify/orders-create", status_code=201, response_model=OrderOut,
              responses={**REPLAYED, **problem_responses(401, 402, 409, 422)}, openapi_extra=SHOPIFY_ORDER_BODY)
    async def shopify_orders_create(request: Request,
                                    x_shopify_hmac_sha256: str = Header(..., max_length=200),
                                    x_shopify_webhook_id: str = Header(..., max_length=120)):
        """Shopify's orders/create webhook: verified over the raw body before anything is stored."""
        svc: Services = app.state.services
        raw = await request.body()
        expected = base64.b64encode(hmac.new(svc.settings.shopify_webhook_secret.encode(), raw,
                                             hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, x_shopify_hmac_sha256):
            log.warning("shopify webhook %s refused: bad signature", x_shopify_webhook_id[:40])
            return problem(401, "bad-signature", "The webhook signature does not match its body.")
        try:
            payload = json.loads(raw)
            if contains_nul(payload):
                raise ValueError("a string holds a NUL (\\x00) character")
            command = shopify.to_command(payload)
        except (ValueError, KeyError, TypeError, ValidationError) as error:
            return problem(422, "invalid-request", f"Not a Shopify order payload: {type(error).__name__}.",
                           [Problem(field="body", code="invalid", message=str(error)[:300])])
        with svc.uow() as uow:
            if uow.inbox.receive(source="shopify", event_id=x_shopify_webhook_id, topic="orders/create",
                                 body=raw.decode(errors="replace"), at=svc.now()) is None:
                existing = uow.orders.by_external("shopify", command.external_id)
                if existing is not None:
                    return JSONResponse({"id": existing.id, "number": existing.number,
                                         "status": str(existing.status), "total_cents": existing.total_cents,
                                         "currency": existing.currency}, status_code=200)
            uow.commit()
        result = place_order(command, uow=svc.uow(), payments=svc.payments, ids=svc.ids, now=svc.now(),
                             source="channel:shopify", max_quantity=svc.settings.max_quantity)
        payload = result.order if isinstance(result.order, dict) else result.order.as_response()
        return JSONResponse(payload, status_code=201 if result.created else 200)

    @app.post("/webhooks/partners/{partner_id}", response_model=WebhookAck, responses=problem_responses(401, 422),
              openapi_extra=PARTNER_EVENT_BODY)
    async def partner_webhook(partner_id: str, request: Request,
                              x_partner_signature: str = Header(..., max_length=200),
                              x_partner_event_id: str = Header(..., max_length=120)) -> JSONResponse:
        """A print partner's job status: verified over the raw body, stored once in the inbox, answered at once;
        the `webhooks` queue applies it."""
        svc: Services = app.state.services
        raw = await request.body()
        return await run_in_threadpool(_receive_partner_event, svc, partner_id, raw, x_partner_signature,
                                       x_partner_event_id)

    def _receive_partner_event(svc: Services, partner_id: str, raw: bytes, signature: str,
                               header_event_id: str) -> JSONResponse:
        secret = svc.settings.partner_webhook_secret(partner_id).encode()
        expected = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            log.warning("partner webhook refused: bad signature (partner %s, event %s)", partner_id[:40],
                        header_event_id[:40])
            return problem(401, "bad-signature", "The webhook signature does not match its body.")
        try:
            event_id = str(json.loads(raw)["event_id"])
        except (ValueError, KeyError, TypeError):
            return problem(422, "invalid-request", "The webhook body has no event_id.",
                           [Problem(field="event_id", code="required", message="The signed body needs event_id.")])
        if event_id != header_event_id:
            return problem(422, "invalid-request", "X-Partner-Event-Id does not match the signed body's event_id.",
                           [Problem(field="X-Partner-Event-Id", code="invalid", message="Header and body disagree.")])
        # One transaction: is the partner known (a dev-default secret must not admit made-up partners), then the
        # inbox row, deduplicated on the signed event id, never on an unsigned header alone.
        with svc.uow() as uow:
            if not uow.partners.exists(partner_id):
                log.warning("partner webhook refused: unknown partner (partner %s, event %s)", partner_id[:40],
                            header_event_id[:40])
                return problem(401, "bad-signature", "The webhook signature does not match its body.")
            inbox_id = uow.inbox.receive(source=f"partner:{partner_id}", event_id=event_id, topic="job.status",
                                         body=raw.decode(errors="replace"), at=svc.now())
            if inbox_id is not None:
                uow.defer(ApplyPartnerEvent(inbox_id=inbox_id))
            uow.commit()
        return JSONResponse({"status": "accepted" if inbox_id is not None else "duplicate"})

    @app.get("/v1/assets/{asset_id}/{file}", response_class=Response,
             responses={**ASSET_MEDIA, **problem_responses(403, 404, 422)})
    def asset_file(asset_id: str, file: str, expires: int, sig: str) -> Response:
        """A stored print file, PDF or preview, behind a signed, expiring link (partners, dashboard, e-mail)."""
        svc: Services = app.state.services
        if file not in ASSET_FILES:
            return problem(404, "not-found", f"No file called {file!r}; try one of {sorted(ASSET_FILES)}.")
        if not verify_asset_signature(svc.settings.asset_url_secret, asset_id, file, expires=expires, sig=sig,
                                      now=time.time()):
            return problem(403, "bad-signature", "This link is invalid or has expired; ask for a new one.")
        with svc.uow() as uow:
            asset = uow.assets.get(asset_id)
        key = asset and {"print.png": asset["print_file_key"], "print.pdf": asset["pdf_key"],
                         "preview": asset["preview_key"]}[file]
        if not key:
            return problem(404, "not-found", "That file does not exist.")
        started = time.perf_counter()
        data = svc.store.get(key)
        elapsed_ms = (time.perf_counter() - started) * 1000
        with svc.uow() as uow:
            uow.assets.record_retrieval(asset_id=asset_id, file=file, ms=elapsed_ms, size=len(data), at=svc.now())
            uow.commit()
        media = mimetypes.guess_type(key)[0] or ASSET_FILES[file]
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=300"})

    return app
