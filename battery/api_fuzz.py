"""schemathesis against the API's own OpenAPI document: every phase (examples, coverage, fuzzing, stateful), both
data modes (positive: schema-valid input must pass; negative: schema-invalid input must be refused), every check
plus battery/api_fuzz_hooks.py's (the rules refuse nothing the schema admits but what depends on data), bounded in
examples and time, against the API running as a uvicorn process on PostgreSQL + Redis; the webhooks are signed
with the API's secrets so the fuzzer reaches past their signature checks. Random bytes are not an image and a random
id names no artwork, so the hooks also make some schema-valid uploads real images and some orders real orders (of
catalogue SKUs, with artwork uploaded through the API before the run, see `plan`), and the OpenAPI links chain an
upload's id into an order in the stateful phase: the accepted paths and the refusals behind them (text, stock,
resolution, replays, Idempotency-Key conflicts) are fuzzed too, and the figures say how often each operation was
answered 2xx. Each finding is reported precisely: operation, check, request, response; the requests are counted per
phase and data mode. The seed is 8 unless API_FUZZ_SEED says otherwise; API_FUZZ_KEEP names a folder to keep
schemathesis's reports in."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select

import db
from battery.api_fuzz_hooks import REFUSED_FOR_DATA, image_bytes
from battery.framework import Context, Figure
from db import tables
from tests.conftest import TEST_KEYS
from tests.integration.production_helpers import ROOT, Processes, free_port

SERVER_ERROR = {"ST101", "ST102"}  # a 5xx, for any request
# what the API answered does not conform to its schema: status, content type, headers, body
SCHEMA_CODES = {"ST103", "ST104", "ST105", "ST106", "ST107", "ST108", "ST109", "ST110", "ST111"}
# the schema and the rules disagree: schema-invalid input accepted (ST201), schema-valid input refused (ST202), or
# refused for a rule the schema could state (ST901, battery/api_fuzz_hooks.rules_agree_with_schema)
RULE_CODES = {"ST201", "ST202", "ST901"}
PHASES = ("examples", "coverage", "fuzzing", "stateful")
POSITIVE_ACCEPTS = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis's default
# The artwork the orders refer to, uploaded through the API before the run: 2250x3150 prints on every product,
# 2100x400 on shirts, hoodies and caps, 1100x1225 on mugs, cases and caps, 300x200 on none (resolution too low).
POOL = (((2250, 3150), "JPEG"), ((2100, 400), "PNG"), ((1100, 1225), "PNG"), ((300, 200), "PNG"))


@contextmanager
def api_process(ctx: Context) -> Iterator[Processes]:
    """The API as one uvicorn process (its pid is the server's), on the context's database and Redis."""
    port = free_port()
    env = {**os.environ, **TEST_KEYS, "DATABASE_URL": ctx.pg_url, "REDIS_URL": ctx.redis_url,
           "PYTHONPATH": str(ROOT), "OBJECT_STORE_DIR": str(ctx.workdir / "objects"), "PRESSROOM_PROMETHEUS": "0"}
    logs = ctx.workdir / "logs"
    logs.mkdir(exist_ok=True)
    system = Processes(env=env, logs=logs, api_url=f"http://127.0.0.1:{port}")
    try:
        system.start("api", str(Path(sys.executable).with_name("uvicorn")), "api.asgi:app", "--host", "127.0.0.1",
                     "--port", str(port), "--workers", "1", "--no-access-log")
        system.wait_http(f"{system.api_url}/healthz")
        yield system
    finally:
        system.stop()


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    title: str
    operation: str
    message: str
    request: str
    status: int | None
    response: str

    def line(self) -> str:
        return (f"{self.code} {self.title} — {self.operation}: {self.message.replace(chr(10), ' ')}\n"
                f"    request: {self.request}\n    response: {self.status} {self.response}")


def _body_text(body) -> str:
    if isinstance(body, dict) and "$base64" in body:
        return base64.b64decode(body["$base64"]).decode("utf-8", "backslashreplace")
    return body if isinstance(body, str) else json.dumps(body) if body is not None else ""


def findings_from(ndjson: Path) -> list[Finding]:
    """Every failed check in schemathesis's NDJSON event stream, one per (code, operation, message)."""
    seen: dict[tuple[str, str, str], Finding] = {}
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished.get("recorder", {})
        for case_id, checks in recorder.get("checks", {}).items():
            for check in checks:
                if check.get("status") != "failure":
                    continue
                failure = check["failure_info"]["failure"]
                interaction = recorder.get("interactions", {}).get(case_id) or {}
                request, response = interaction.get("request") or {}, interaction.get("response") or {}
                key = (failure["code"], failure["operation"], failure.get("message", "")[:80])
                if key in seen:
                    continue
                seen[key] = Finding(
                    code=failure["code"], title=failure["title"], operation=failure["operation"],
                    message=failure.get("message", ""),
                    request=f"{request.get('method', '')} {request.get('uri', '')} "
                            f"{_body_text(request.get('body'))[:400]!r}",
                    status=response.get("status_code"),
                    response=_body_text(response.get("content", response.get("body")))[:300])
    return sorted(seen.values(), key=lambda f: (f.code, f.operation, f.message))


def config_file(workdir: Path) -> Path:
    """schemathesis.toml: the operations whose schema-valid requests may be refused for data the schema cannot
    know (see api_fuzz_hooks) let those statuses through positive_data_acceptance; the hook looks inside."""
    lines = []
    for operation, statuses in REFUSED_FOR_DATA.items():
        allowed = json.dumps(POSITIVE_ACCEPTS + [str(s) for s in statuses])
        lines += ["[[operations]]", f"include-name = {json.dumps(operation)}",
                  f"checks.positive_data_acceptance.expected-statuses = {allowed}", ""]
    path = workdir / "schemathesis.toml"
    path.write_text("\n".join(lines))
    return path


def plan(ctx: Context, api_url: str) -> Path:
    """What the hooks need to make real orders, as a JSON file: the ids of artwork uploaded through the API (each
    must be accepted), the catalogue's SKUs with their text slots and which of that artwork prints on them at their
    minimum DPI, and a few prohibited words."""
    engine = create_engine(ctx.pg_url, pool_size=1)
    try:
        with engine.connect() as conn:
            skus = list(conn.scalars(select(tables.variants.c.sku)))
        with db.SqlUnitOfWork(db.make_session_factory(engine)) as uow:
            variants = uow.catalogue.variants(skus)
            prohibited = list(uow.catalogue.prohibited_words()[:5])
    finally:
        engine.dispose()
    uploaded = {}  # id -> (width, height)
    with httpx.Client(base_url=api_url, timeout=120) as client:
        for size, image_format in POOL:
            data = image_bytes(size, image_format, (30, 120, 200), 300)
            response = client.post("/v1/artwork", files={"file": (f"pool.{image_format.lower()}", data)})
            if response.status_code != 201:
                raise RuntimeError(f"the API refused a {size} {image_format} artwork: {response.text[:300]}")
            uploaded[response.json()["id"]] = size

    def prints(template, artwork_id: str) -> bool:
        return template.effective_dpi(*uploaded[artwork_id]) >= template.min_effective_dpi

    path = ctx.workdir / "api-fuzz-plan.json"
    path.write_text(json.dumps({"artwork_ids": list(uploaded), "prohibited": prohibited, "skus": {
        sku: {"slots": {slot.name: {"max_chars": slot.max_chars, "charset": slot.charset}
                        for slot in variant.template.text_slots},
              "prints": [a for a in uploaded if prints(variant.template, a)],
              "too_small": [a for a in uploaded if not prints(variant.template, a)]}
        for sku, variant in variants.items()}}))
    return path


def run_schemathesis(ctx: Context, api_url: str, *, max_examples: int, max_time: int) -> tuple[dict, list[Finding]]:
    plan_file = plan(ctx, api_url)
    reports = ctx.workdir / "schemathesis"
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config_file(ctx.workdir)),
               "run", f"{api_url}/openapi.json", "--checks", "all", "--phases", ",".join(PHASES), "--mode", "all",
               "--max-examples", str(max_examples), "--max-time", str(max_time),
               "--seed", os.environ.get("API_FUZZ_SEED", "8"), "--workers", "2",
               "--report", "json,ndjson", "--report-dir", str(reports), "--request-timeout", "30"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ctx.workdir, timeout=max_time + 300,
                          env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT),
                               "SCHEMATHESIS_HOOKS": "battery.api_fuzz_hooks", "API_FUZZ_PLAN": str(plan_file)})
    (ctx.workdir / "schemathesis.out").write_text(done.stdout + done.stderr)
    keep = os.environ.get("API_FUZZ_KEEP")  # a folder to keep the reports in (the workdir is removed)
    if keep:
        shutil.copytree(reports, Path(keep), dirs_exist_ok=True)
        shutil.copy(ctx.workdir / "schemathesis.out", Path(keep) / "schemathesis.out")
    summary = json.loads(next(reports.glob("json-*.json")).read_text())
    ndjson = next(reports.glob("ndjson-*.ndjson"))
    summary["cases_per_phase"] = cases_per_phase(ndjson)
    summary["answers"] = answers_per_operation(ndjson, json.loads(plan_file.read_text())["artwork_ids"])
    return summary, findings_from(ndjson)


def cases_per_phase(ndjson: Path) -> dict[str, Counter]:
    """Per phase, the requests sent, split by the data mode of their generation (positive, negative)."""
    counts: dict[str, Counter] = {phase: Counter() for phase in PHASES}
    for line in ndjson.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        cases = finished.get("recorder", {}).get("cases", {})
        for case_id in finished.get("recorder", {}).get("interactions", {}):
            meta = (cases.get(case_id, {}).get("value") or {}).get("meta") or {}
            mode = (meta.get("generation") or {}).get("mode", "unknown")
            counts.setdefault(finished["phase"], Counter())[mode] += 1
    return counts


@dataclass
class Answers:
    """What the API answered, per operation: statuses, the problem codes of its 422s, and the orders accepted with
    artwork the run's own schemathesis uploads made (not the pool's: a stateful link carried the id)."""

    statuses: dict[str, Counter]
    codes: dict[str, Counter]
    orders_with_linked_artwork: int


def _json(body) -> object:
    try:
        return json.loads(_body_text(body))
    except ValueError:
        return None


def answers_per_operation(ndjson: Path, pool: list[str]) -> Answers:
    answers = Answers(statuses={}, codes={}, orders_with_linked_artwork=0)
    for line in ndjson.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        cases = finished.get("recorder", {}).get("cases", {})
        for case_id, interaction in finished.get("recorder", {}).get("interactions", {}).items():
            case = (cases.get(case_id) or {}).get("value") or {}
            status = (interaction.get("response") or {}).get("status_code")
            if status is None:
                continue
            operation = f"{case.get('method', '?').upper()} {case.get('path', '?')}"
            answers.statuses.setdefault(operation, Counter())[status] += 1
            if status == 422:
                problem = _json((interaction["response"]).get("content"))
                errors = problem.get("errors", []) if isinstance(problem, dict) else []
                answers.codes.setdefault(operation, Counter()).update(
                    {str(e.get("code")) for e in errors if isinstance(e, dict)})
            if operation == "POST /v1/orders" and status == 201:
                order = _json(interaction["request"].get("body"))
                lines = order.get("lines", []) if isinstance(order, dict) else []
                answers.orders_with_linked_artwork += any(
                    isinstance(item, dict) and item.get("artwork_id") not in pool for item in lines)
    return answers


def api_fuzz(ctx: Context) -> list[Figure]:
    """0 server errors and 0 schema violations, each finding printed with its request and response."""
    return fuzz(ctx)[0]


def fuzz(ctx: Context) -> tuple[list[Figure], list[Finding]]:
    name = "api-fuzz"
    max_examples, max_time = ctx.pick((20, 60), (100, 300))
    with api_process(ctx) as system:
        summary, findings = run_schemathesis(ctx, system.api_url, max_examples=max_examples, max_time=max_time)
        system.assert_alive()
    server = [f for f in findings if f.code in SERVER_ERROR]
    schema = [f for f in findings if f.code in SCHEMA_CODES]
    rules = [f for f in findings if f.code in RULE_CODES]
    other = [f for f in findings if f.code not in SCHEMA_CODES | RULE_CODES | SERVER_ERROR]
    report = ctx.workdir / "schemathesis-findings.txt"
    report.write_text("\n".join(f.line() for f in findings) + "\n")
    print(f"schemathesis findings ({len(findings)}):\n" + "\n".join(f.line() for f in findings))
    cases = summary["test_cases"]
    ops = summary["operations"]
    phases = summary["phases"]
    per_phase = summary["cases_per_phase"]

    def listed(items: list[Finding]) -> str:
        return "; ".join(sorted({f"{f.operation} {f.code} → {f.status}" for f in items}))

    def phase_figure(phase: str) -> str:
        counted = per_phase.get(phase, Counter())
        status = phases.get(phase, {}).get("status", "not run")
        modes = ", ".join(f"{counted[m]:,} {m}" for m in sorted(counted))
        return f"{phase}: {status}, {sum(counted.values()):,} requests" + (f" ({modes})" if modes else "")

    ran = [p for p in PHASES if phases.get(p, {}).get("status") not in (None, "skip")]
    answers: Answers = summary["answers"]

    def answered(operation: str) -> str:
        counted = answers.statuses.get(operation, Counter())
        codes = answers.codes.get(operation, Counter())
        refusals = ", ".join(f"{code} {n}" for code, n in codes.most_common())
        return (f"{operation}: " + ", ".join(f"{n}×{status}" for status, n in sorted(counted.items()))
                + (f" (422 codes: {refusals})" if refusals else ""))

    artwork_ok = answers.statuses.get("POST /v1/artwork", Counter())[201]
    orders = answers.statuses.get("POST /v1/orders", Counter())
    shopify = answers.statuses.get("POST /webhooks/shopify/orders-create", Counter())
    probes = sum(n[405] for n in answers.statuses.values() if set(n) == {405})
    negative = sum(c.get("negative", 0) for c in per_phase.values())
    return [
        Figure(test=name, figure=f"{cases['generated']:,} test cases over {ops['tested']}/{ops['total']} operations, "
                                 f"{summary['running_time']:.0f} s (≤ {max_examples} examples per operation, "
                                 f"≤ {max_time} s); " + "; ".join(phase_figure(p) for p in PHASES),
               pass_figure="every operation and phase tested, negative data sent",
               passed=(ops["tested"] == ops["total"] and not ops["errored"] and ran == list(PHASES)
                       and negative > 0)),
        Figure(test=name, figure=f"happy paths reached: {artwork_ok} uploads accepted, {orders[201]} orders accepted "
                                 f"({answers.orders_with_linked_artwork} with artwork uploaded in the run's own "
                                 f"requests), {orders[200]} replayed (200), {shopify[201]} Shopify orders accepted; "
                                 "per operation: "
                                 + "; ".join(answered(op) for op in sorted(answers.statuses)
                                             if set(answers.statuses[op]) != {405})
                                 + f"; {probes} probes of undocumented methods (405)",
               pass_figure="≥ 1 upload and ≥ 1 order accepted (201)", passed=artwork_ok > 0 and orders[201] > 0),
        Figure(test=name, figure=f"server errors: {len(server)}" + (f" ({listed(server)})" if server else ""),
               pass_figure="0", passed=not server),
        Figure(test=name, figure=f"schema violations: {len(schema)}" + (f" ({listed(schema)})" if schema else ""),
               pass_figure="0", passed=not schema),
        Figure(test=name, figure=f"schema and rules disagree: {len(rules)}" + (f" ({listed(rules)})" if rules else ""),
               pass_figure="0", passed=not rules),
        Figure(test=name, figure=f"other findings: {len(other)}" + (f" ({listed(other)})" if other else ""),
               pass_figure="0", passed=not other),
    ], findings
