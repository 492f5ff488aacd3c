"""Run the benchmarks and print the results table.

Usage: ``python -m benchmarks [--only hot|e2e|import|relay|limiter] [--reference DIR]
[--write benchmarks/RESULTS.md] [--quick]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from benchmarks import bench_hotpath, bench_import
from benchmarks._harness import Table, machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only", choices=["hot", "e2e", "import", "relay", "limiter"], help="run one group only"
    )
    parser.add_argument(
        "--reference",
        help="another gbtrack tree (its src/ is used) to compare the import time with",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    parser.add_argument("--write", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)

    table = Table()
    print(f"machine: {machine()}", flush=True)
    if args.only in (None, "hot"):
        print("hot path (median of interleaved repeats):", flush=True)
        bench_hotpath.run(table, quick=args.quick)
    if args.only in (None, "import"):
        print("import time (fresh subprocesses):", flush=True)
        bench_import.run(table, quick=args.quick, reference=args.reference)
    if args.only in (None, "limiter"):
        from benchmarks import bench_limiter

        print("rate-limit slots (median of interleaved repeats):", flush=True)
        bench_limiter.run(table, quick=args.quick)
    if args.only in (None, "e2e"):
        from benchmarks import bench_e2e

        print("end to end (emulator in a subprocess on 127.0.0.1):", flush=True)
        bench_e2e.run(table, quick=args.quick)

    if args.only in (None, "relay"):
        from benchmarks import bench_relay

        print("SQL outbox and relays (PostgreSQL and the emulator on 127.0.0.1):", flush=True)
        bench_relay.run(table, quick=args.quick)

    text = table.markdown()
    print()
    print(text)
    if args.write:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        args.write.write_text(f"Run {stamp} on {machine()}.\n\n{text}\n", encoding="utf-8")
    missed = [r.benchmark for r in table.rows if r.ok is False]
    if missed:
        print(f"\ntargets missed: {', '.join(missed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
