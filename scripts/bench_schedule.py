"""The offline model of the tight section without progress bars: the wait() baseline,
the tracker's adaptive scheduler and a hazard-first oracle on one request budget, with
no HTTP, database or CPU in the way. The code is benchmark/schedule_model.py.

    .venv/bin/python scripts/bench_schedule.py [--seeds 8,9,10]
"""

from benchmark.schedule_model import main

if __name__ == "__main__":
    main()
