"""Callback latency: how long after the tracker records a completion its webhook arrives.
The code is benchmark/callbacks.py.

    .venv/bin/python scripts/bench_callbacks.py [--predictions 1000] [--quick]
"""

from benchmark.callbacks import main

if __name__ == "__main__":
    main()
