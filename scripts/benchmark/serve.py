"""The benchmarks of `tracker serve` (scripts/bench_serve.py): one module each, run
by name, every option after the name going to that benchmark.

    .venv/bin/python scripts/bench_serve.py register [--quick]   # registrations per second
    .venv/bin/python scripts/bench_serve.py push [--quick]       # push to outgoing webhook
    .venv/bin/python scripts/bench_serve.py all [--quick]        # each in turn

Adding one: a module of this package with ``main(argv)`` (its own argparse, prog
``bench_serve.py NAME``), named in BENCHMARKS.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from typing import Any

#: name -> (module, what it measures)
BENCHMARKS = {
    "register": ("benchmark.registrations", "registrations per second through the JSON API"),
    "push": ("benchmark.push_latency", "from the upstream's push to the tracker's webhook"),
}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="bench_serve.py",
        description="Benchmarks of tracker serve.",
        epilog="benchmarks: "
        + "; ".join(f"{name}: {what}" for name, (_, what) in BENCHMARKS.items())
        + ". `bench_serve.py NAME --help` lists a benchmark's options; all passes its"
        " options (--quick, --engines) to each.",
    )
    parser.add_argument("benchmark", choices=[*BENCHMARKS, "all"])
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's options")
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if args.benchmark == "all" else [args.benchmark]
    results = {}
    for name in names:
        module = importlib.import_module(BENCHMARKS[name][0])
        results[name] = module.main(args.options)
    return results
