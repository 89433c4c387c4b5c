"""The benchmarks of `tracker serve`: registrations per second through the JSON API
(register) and the latency from the upstream's push to the tracker's outgoing webhook
(push). The code is benchmark/serve.py and the modules it names.

    .venv/bin/python scripts/bench_serve.py register|push|all [--quick] [...]
"""

from benchmark.serve import main

if __name__ == "__main__":
    main()
