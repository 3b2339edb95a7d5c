"""Run every benchmark, each in its own process, and print one table of their JSON lines.

    python -m bench                      # all of them (make bench)
    python -m bench intake webhooks      # some of them
    python -m bench --quick              # shorter runs, for a smoke check of the harness

Each benchmark also runs alone (`python -m bench.<name> --help`). Needs PostgreSQL and Redis: see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from bench.common import ROOT, say

BENCHES = {
    "intake": ["--repetitions", "3", "--seconds", "10"],
    "webhooks": ["--repetitions", "3", "--seconds", "10"],
    "render": ["--runs", "3"],
    "qa": ["--prints", "500", "--speed-runs", "5"],
    "dashboard": [],
    "pipeline": [],  # cached 300 orders, then unique 80
    "lag": [],  # after pipeline: half the rate pipeline-cached sustained
}
QUICK = {
    "intake": ["--repetitions", "1", "--seconds", "3"],
    "webhooks": ["--repetitions", "1", "--seconds", "3"],
    "render": ["--runs", "1", "--templates", "poster-18x24"],
    "qa": ["--prints", "40", "--speed-runs", "1"],
    "dashboard": ["--orders", "20000"],
    "pipeline": ["--mode", "cached", "--orders", "20"],
    "lag": ["--seconds", "30"],
}


def run(name: str, args: list[str]) -> list[dict]:
    say(f"\n=== bench {name} {' '.join(args)}")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    print(done.stdout, end="", flush=True)
    lines = []
    for line in done.stdout.splitlines():
        if line.startswith("{") and '"bench"' in line:
            lines.append(json.loads(line))
    if done.returncode != 0:
        lines.append({"bench": name, "error": f"exit {done.returncode}"})
    say(f"=== bench {name}: {time.monotonic() - started:.0f} s")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="name", help=f"which to run (default all): {', '.join(BENCHES)}")
    parser.add_argument("--quick", action="store_true", help="short runs: checks the harness, not the figures")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHES]
    if unknown:
        parser.error(f"no benchmark called {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    table = QUICK if args.quick else BENCHES
    results = [line for name in (args.names or list(BENCHES)) for line in run(name, table[name])]
    print("\n" + "-" * 96)
    print(f"{'bench':28} {'ours':>12} {'baseline':>12} {'ratio':>7}  {'unit':14} goal")
    for line in results:
        if "error" in line:
            print(f"{line['bench']:28} {'failed: ' + line['error']}")
            continue
        ratio = "-" if line.get("ratio") is None else f"{line['ratio']:.2f}"
        print(f"{line['bench'] + ('/' + line['part'] if 'part' in line else ''):28} {line['ours']:12.4g} "
              f"{line['baseline'] if line['baseline'] is not None else '-':>12} {ratio:>7}  "
              f"{line.get('unit', ''):14} {line.get('goal', '')}")
    return 1 if any("error" in line for line in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
