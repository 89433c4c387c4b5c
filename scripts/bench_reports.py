"""The reports benchmark (issue 18 item 1): every canned report of `tracker report` over
1M predictions on SQLite and PostgreSQL (goal: each under 2 s). The code is
benchmark/reports_bench.py.

    .venv/bin/python scripts/bench_reports.py [--rows N] [--engines sqlite,postgresql] [...]
"""

from benchmark.reports_bench import main

if __name__ == "__main__":
    raise SystemExit(main())
