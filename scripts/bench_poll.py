"""Poll throughput: how many polls per second (and per daemon CPU-second) the daemon
sustains. The code is benchmark/poll.py.

    .venv/bin/python scripts/bench_poll.py [--predictions 2000] [--seconds 15]
"""

from benchmark.poll import main

if __name__ == "__main__":
    main()
