"""The storage benchmark (issue 18 item 2): bytes per finished prediction on SQLite and
PostgreSQL, bulk-written and written by the daemon. The code is benchmark/storage.py.

    .venv/bin/python scripts/bench_storage.py [--engines sqlite,postgresql] [--fill N] [...]
"""

from benchmark.storage import main

if __name__ == "__main__":
    raise SystemExit(main())
