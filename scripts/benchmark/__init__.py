"""The tracker's benchmarks, as a package beside their entry points in scripts/.

harness     processes (SimulatorProcess, DaemonProcess), free ports, the tracker CLI,
            CPU and RSS from /proc, the machine and the source measured
databases   throwaway SQLite and PostgreSQL databases, read-only queries beside a daemon
stats       percentiles and distributions
receiver    the webhook receiver (its own process)
poll, callbacks, daemons
            the single-purpose benchmarks (scripts/bench_poll.py, bench_callbacks.py,
            bench_daemons.py)
full        the main benchmark (scripts/bench), with its sections: profile, efficiency,
            workload (with baseline, samplers and clients), scale (with fill and explain),
            and report (the table, the targets)
"""
