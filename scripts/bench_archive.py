"""The archive benchmark (issue 15): MB/s into a local directory and a moto S3 server on
loopback, the daemon's peak RSS archiving a 1 GiB output, and polls per daemon
CPU-second with archiving on beside off. The code is benchmark/archive.py and the
modules it names.

    .venv/bin/python scripts/bench_archive.py [--quick] [--engines sqlite,postgresql] [...]
"""

from benchmark.archive import main

if __name__ == "__main__":
    raise SystemExit(main())
