"""The main benchmark: efficiency, detection and callback latency, scale, and a baseline.
scripts/bench runs it in the project's .venv; the code is the benchmark package
(benchmark/full.py and the sections it imports).

    scripts/bench [--fast] [--engines sqlite,postgresql] [--sections ...] [--json PATH]
"""

import sys

from benchmark.full import main

if __name__ == "__main__":
    sys.exit(main())
