"""Several daemons on one PostgreSQL database: does poll throughput grow with them?
The code is benchmark/daemons.py.

    .venv/bin/python scripts/bench_daemons.py [--predictions 3000] [--seconds 15]
"""

from benchmark.daemons import main

if __name__ == "__main__":
    main()
