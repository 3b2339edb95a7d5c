"""`python -m battery [CHECK ...] [--size ci|battery]`: run the battery's checks, print the table of figures,
exit 1 when any figure fails (2 when a check could not run)."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from battery.checks import CHECKS
from battery.framework import SIZES, Figure, could_not_run, failures, fresh_context, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m battery", description=__doc__)
    parser.add_argument("checks", nargs="*", metavar="CHECK",
                        help=f"which checks to run (default: all): {', '.join(CHECKS)}")
    parser.add_argument("--size", choices=SIZES, default="battery",
                        help="battery: the issue's figures (default); ci: the sizes the pytest suite runs")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.add_argument("--soak", action="store_true", help="the long fault-injection part: python -m battery.soak")
    args = parser.parse_args(argv)
    if args.soak:
        from battery.soak import main as soak

        return soak([])
    if args.list:
        for check in CHECKS.values():
            print(f"{check.name:18} {check.summary}")
        return 0
    unknown = [c for c in args.checks if c not in CHECKS]
    if unknown:
        parser.error(f"no such check: {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    figures: list[Figure] = []
    broken = False
    for name in args.checks or list(CHECKS):
        check = CHECKS[name]
        print(f"== {name} ({args.size}): {check.summary}", flush=True)
        started = time.monotonic()
        try:
            with fresh_context(args.size) as ctx:
                got = check.run(ctx)
        except Exception as error:  # reported as a failed figure; the others still run
            got, broken = could_not_run(name, error), True
        figures += got
        print(table(got), f"\n({time.monotonic() - started:.0f} s)\n", flush=True)
    print("== all figures\n" + table(figures))
    failed = failures(figures)
    print(f"\n{len(figures) - len(failed)} of {len(figures)} figures pass")
    return 2 if broken else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
