"""The dashboard benchmark (issue 16 item 8): the server-side time of each page of `tracker
serve`'s dashboard with 1M predictions on PostgreSQL (goal: under 200 ms), and the
plans of its reads. The code is benchmark/dashboard.py and the modules it names.

    .venv/bin/python scripts/bench_dashboard.py [--quick] [--engines postgresql,sqlite] [...]
"""

from benchmark.dashboard import main

if __name__ == "__main__":
    raise SystemExit(main())
