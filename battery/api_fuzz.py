"""schemathesis against the API's own OpenAPI document: every phase (examples, coverage, fuzzing, stateful), both
data modes (positive: schema-valid input must pass; negative: schema-invalid input must be refused), every check
plus battery/api_fuzz_hooks.py's (the rules refuse nothing the schema admits but what depends on data), bounded in
examples and time, against the API running as a uvicorn process on PostgreSQL + Redis; the webhooks are signed
with the API's secrets so the fuzzer reaches past their signature checks. Each finding is reported precisely:
operation, check, request, response; the requests are counted per phase and data mode. The seed is 8 unless
API_FUZZ_SEED says otherwise; API_FUZZ_KEEP names a folder to keep schemathesis's reports in."""

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

from battery.api_fuzz_hooks import REFUSED_FOR_DATA
from battery.framework import Context, Figure
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


def run_schemathesis(ctx: Context, api_url: str, *, max_examples: int, max_time: int) -> tuple[dict, list[Finding]]:
    reports = ctx.workdir / "schemathesis"
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config_file(ctx.workdir)),
               "run", f"{api_url}/openapi.json", "--checks", "all", "--phases", ",".join(PHASES), "--mode", "all",
               "--max-examples", str(max_examples), "--max-time", str(max_time),
               "--seed", os.environ.get("API_FUZZ_SEED", "8"), "--workers", "2",
               "--report", "json,ndjson", "--report-dir", str(reports), "--request-timeout", "30"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ctx.workdir, timeout=max_time + 300,
                          env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT),
                               "SCHEMATHESIS_HOOKS": "battery.api_fuzz_hooks"})
    (ctx.workdir / "schemathesis.out").write_text(done.stdout + done.stderr)
    keep = os.environ.get("API_FUZZ_KEEP")  # a folder to keep the reports in (the workdir is removed)
    if keep:
        shutil.copytree(reports, Path(keep), dirs_exist_ok=True)
        shutil.copy(ctx.workdir / "schemathesis.out", Path(keep) / "schemathesis.out")
    summary = json.loads(next(reports.glob("json-*.json")).read_text())
    ndjson = next(reports.glob("ndjson-*.ndjson"))
    summary["cases_per_phase"] = cases_per_phase(ndjson)
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
    negative = sum(c.get("negative", 0) for c in per_phase.values())
    return [
        Figure(test=name, figure=f"{cases['generated']:,} test cases over {ops['tested']}/{ops['total']} operations, "
                                 f"{summary['running_time']:.0f} s (≤ {max_examples} examples per operation, "
                                 f"≤ {max_time} s); " + "; ".join(phase_figure(p) for p in PHASES),
               pass_figure="every operation and phase tested, negative data sent",
               passed=(ops["tested"] == ops["total"] and not ops["errored"] and ran == list(PHASES)
                       and negative > 0)),
        Figure(test=name, figure=f"server errors: {len(server)}" + (f" ({listed(server)})" if server else ""),
               pass_figure="0", passed=not server),
        Figure(test=name, figure=f"schema violations: {len(schema)}" + (f" ({listed(schema)})" if schema else ""),
               pass_figure="0", passed=not schema),
        Figure(test=name, figure=f"schema and rules disagree: {len(rules)}" + (f" ({listed(rules)})" if rules else ""),
               pass_figure="0", passed=not rules),
        Figure(test=name, figure=f"other findings: {len(other)}" + (f" ({listed(other)})" if other else ""),
               pass_figure="0", passed=not other),
    ], findings
