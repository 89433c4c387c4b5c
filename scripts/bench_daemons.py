"""Several daemons on one PostgreSQL database: polls per second and CPU per poll (the
daemons', PostgreSQL's) with 1, 2 and 4 daemons, PostgreSQL's contention figures, and
where PostgreSQL rather than the daemons becomes the limit.
The code is benchmark/daemons.py (PostgreSQL's side: daemons_pg.py; the model:
daemons_model.py).

    .venv/bin/python scripts/bench_daemons.py [--predictions 4000] [--seconds 15]
        [--daemons 1,2,4] [--workloads forever,ending] [--rounds 3]
"""

from benchmark.daemons import main

if __name__ == "__main__":
    main()
