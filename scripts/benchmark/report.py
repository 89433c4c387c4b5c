"""The main benchmark's report: the printed table, and the targets met or not."""

from __future__ import annotations

from typing import Any

from .detection import print_detection
from .profile import Profile

#: added to the poll interval by the detection-latency target (seconds)
DETECTION_SLACK = 0.25
CALLBACK_TARGET_MS = 250.0
POLLS_PER_CPU_TARGET = 1000.0
#: what each bare GET loop beside the daemon does (benchmark/bare.py)
BARE_LOOPS = {
    "aiohttp": "bare aiohttp GET loop (read, json.loads, nothing else)",
    "httpx": "bare httpx GET loop (read, json.loads, nothing else)",
    "tracker": "the daemon's HTTP client alone (UpstreamClient.get_prediction, no database)",
}
#: issue 18 item 3: the daemon at half a bare aiohttp GET loop or better
BARE_SHARE_TARGET = 0.5
LAG_TARGET = 1.0
RSS_TARGET_MB = 150.0
BUDGET_RATIO_TARGET = 2.0


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"\ntracker benchmark ({'fast' if report['settings']['fast'] else 'full'}):"
        f" {m['nproc']} CPUs, {m.get('memory_gb', '?')} GB, Python {m['python']},"
        f" SQLite {m['sqlite']}, PostgreSQL {m.get('postgresql', '-')};"
        f" load average {m['loadavg_start']} at start, {m.get('loadavg_end')} at end;"
        f" {report['seconds']:.0f} s"
    )
    for run in ("ample", "tight"):
        if report.get(run):
            print_workload(run, report[run], report["settings"].get("logs"))
    if report.get("efficiency"):
        print_efficiency(report["efficiency"])
    if report.get("scale"):
        print_scale(report["scale"])
    print("\ntargets")
    for t in report["targets"]:
        state = {True: "met", False: "NOT MET", None: "n/a"}[t["met"]]
        print(f"  [{state:^7}] {t['target']}: {t['value']}")


def print_workload(run: str, w: dict[str, Any], logs: str | None) -> None:
    """A workload run: a row per client, the ratios, and the details of each client."""
    work = w["workload"]
    print(
        f"\n{run}: {work['predictions']} predictions per client, peak {work['peak_running']}"
        f" running at once, --max-rps {w['max_rps']:g} for every client,"
        f" --poll-min {w['poll_min']:g}, runs log"
        f" {'plain lines' if logs == 'plain' else 'progress bars'};"
        f" load {w['loadavg_start']} -> {w['loadavg_end']}"
    )
    print(
        f"{'client':<22}{'engine':<11}{'req/pred':>9}{'det p50':>9}{'p95':>7}{'p99':>7}"
        f"{'max':>7}{'-intvl p99':>11}{'hook p50':>10}{'p99 ms':>8}{'lag p99':>9}"
        f"{'polls/CPU-s':>12}"
    )
    for c in w["clients"]:
        name = (
            f"tracker {c['scheduler']}"
            if c["client"] == "tracker"
            else f"baseline {c['scheduler']}"
        )
        d = c["detection_seconds"]
        hook = c.get("callback_ms") or {}
        lag = (c.get("schedule_lag_seconds") or {}).get("p99")
        print(
            f"{name:<22}{c['engine'] or '-':<11}{fmt(c['requests_per_prediction'], 1):>9}"
            f"{fmt(d['p50']):>9}{fmt(d['p95']):>7}{fmt(d['p99']):>7}{fmt(d['max']):>7}"
            f"{fmt(c['detection_minus_interval_seconds']['p99']):>11}"
            f"{fmt(hook.get('p50'), 0):>10}{fmt(hook.get('p99'), 0):>8}{fmt(lag):>9}"
            f"{fmt(c['polls_per_cpu_second'], 0):>12}"
        )
    for name, r in w["ratios"].items():
        print(
            f"  {name}: requests/prediction x{fmt(r['requests_per_prediction'])},"
            f" detection p50 x{fmt(r['detection_p50'])}, p95 x{fmt(r['detection_p95'])},"
            f" p99 x{fmt(r['detection_p99'])}"
        )
    _print_details(w)


def _print_details(w: dict[str, Any]) -> None:
    """Where each client's time went, and the simulator's answer time."""
    for c in w["clients"]:
        if c["client"] == "tracker":
            path = c["callback_path_ms"]
            late = c["detecting_poll_late_seconds"]
            print(
                f"  tracker {c['scheduler']} {c['engine']}: interval at completion"
                f" p50 {fmt(c['interval_at_completion_seconds']['p50'])} s,"
                f" detecting poll late p50 {fmt(late['p50'])} s p99 {fmt(late['p99'])} s;"
                f" webhook queued->send p50 {fmt(path['queued_to_send_ms']['p50'], 0)} ms"
                f" p99 {fmt(path['queued_to_send_ms']['p99'], 0)} ms,"
                f" send p99 {fmt(path['send_ms']['p99'], 0)} ms"
            )
        else:
            gets = c.get("get_seconds") or {}
            lag = c.get("event_loop_lag_seconds") or {}
            print(
                f"  baseline: GET p50 {fmt(gets.get('p50'), 3)} s p99 {fmt(gets.get('p99'), 3)}"
                f" s, event-loop lag p99 {fmt(lag.get('p99'), 3)} s, {c.get('get_errors')}"
                " errors"
            )
    for c in w["clients"]:
        if c.get("detection_distribution"):
            name = f"tracker {c['scheduler']} {c['engine']}" if c["engine"] else "baseline"
            print_detection(name, c["detection_distribution"])
    sl = w["simulator_latency_seconds"]
    print(
        f"  simulator: health probe p50 {fmt(sl['p50'], 3)} s p99 {fmt(sl['p99'], 3)} s,"
        f" {fmt(w['simulator_cpu_share'])} CPU"
    )
    if w["unfinished"]:
        print(f"  NOT FINISHED at the deadline: {w['unfinished']}")


def print_efficiency(rows: list[dict[str, Any]]) -> None:
    print("\nefficiency: never-ending predictions, every answer a change and a write")
    print(
        f"{'engine':<11}{'polls/s':>9}{'polls/CPU-s':>13}{'daemon CPU':>12}{'sim CPU':>9}"
        f"{'pg CPU-s':>10}{'whole run polls/CPU-s':>23}{'RSS MB':>8}"
    )
    for e in rows:
        print(
            f"{e['engine']:<11}{fmt(e['polls_per_second'], 0):>9}"
            f"{fmt(e['polls_per_cpu_second'], 0):>13}{fmt(e['daemon_cpu_share']):>12}"
            f"{fmt(e['simulator_cpu_share']):>9}{fmt(e['postgres_backend_cpu_seconds']):>10}"
            f"{fmt(e['whole_run']['polls_per_cpu_second'], 0):>23}{fmt(e['peak_rss_mb'], 1):>8}"
        )
        for client, b in (e.get("bare") or {}).items():
            what = BARE_LOOPS.get(client, f"bare {client} GET loop")
            print(
                f"  {e['engine']}: {what}"
                f" {fmt(b['requests_per_cpu_second'], 0)} requests/CPU-s; the daemon is"
                f" x{fmt(e['daemon_vs_bare'][client], 2)} of it"
            )


def print_scale(rows: list[dict[str, Any]]) -> None:
    print("\nscale: registered / active; adaptive daemon at --poll-min 1, no binding budget")
    print(
        f"{'engine':<11}{'registered':>11}{'active':>8}{'polls/s':>9}{'lag p99':>9}"
        f"{'delay p99':>10}{'RSS MB':>8}{'B/finished':>11}{'backoff polls/s':>16}"
        f"{'lag p99':>9}"
    )
    for s in rows:
        a = s["adaptive"]
        b = s.get("backoff") or {}
        print(
            f"{s['engine']:<11}{s['registered']:>11}{s['active']:>8}"
            f"{fmt(a['polls_per_second'], 0):>9}{fmt(a['schedule_lag_seconds']['p99']):>9}"
            f"{fmt((a['poll_delay_seconds'] or {}).get('p99')):>10}"
            f"{fmt(a['peak_rss_mb'], 1):>8}{s['db_bytes_per_finished']:>11}"
            f"{fmt(b.get('polls_per_second'), 0):>16}"
            f"{fmt((b.get('schedule_lag_seconds') or {}).get('p99')):>9}"
        )
    for s in rows:
        scans = [
            f"{st['operation']}: {st['full_scans']}"
            for st in s["explain"]["statements"]
            if st["full_scans"]
        ]
        print(
            f"  {s['engine']} EXPLAIN: {len(s['explain']['statements'])} statements,"
            f" full scans: {scans or 'none'}"
        )


def evaluate_targets(report: dict[str, Any], profile: Profile) -> list[dict[str, Any]]:
    """Each target with the value measured and whether it is met (None: no value)."""
    return [
        *_efficiency_targets(report.get("efficiency") or []),
        *_scale_targets(report.get("scale") or [], profile),
        *_ample_targets(report.get("ample")),
        *_tight_targets(report.get("tight")),
    ]


def _target(name: str, value: Any, met: bool | None) -> dict[str, Any]:
    return {"target": name, "value": value, "met": met}


def _efficiency_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    targets = []
    for e in rows:
        v = e["polls_per_cpu_second"]
        targets.append(
            _target(
                f"{e['engine']}: >= {POLLS_PER_CPU_TARGET:g} polls per daemon CPU-second"
                " (with the database writes)",
                v,
                None if v is None else v >= POLLS_PER_CPU_TARGET,
            )
        )
        ratio = (e.get("daemon_vs_bare") or {}).get("aiohttp")
        if "bare" in e:
            targets.append(
                _target(
                    f"{e['engine']}: polls per daemon CPU-second >= {BARE_SHARE_TARGET:g} x a"
                    " bare aiohttp GET loop's requests (issue 18 item 3)",
                    f"x{fmt(ratio, 2)}",
                    None if ratio is None else ratio >= BARE_SHARE_TARGET,
                )
            )
    return targets


def _scale_targets(rows: list[dict[str, Any]], profile: Profile) -> list[dict[str, Any]]:
    targets = []
    for s in rows:
        a = s["adaptive"]
        lag = a["schedule_lag_seconds"]["p99"]
        delay = (a["poll_delay_seconds"] or {}).get("p99")
        worst = max(x for x in (lag, delay) if x is not None) if lag is not None else None
        targets.append(
            _target(
                f"{s['engine']}: {s['active']} active at --poll-min {profile.poll_min:g},"
                f" schedule lag p99 < {LAG_TARGET:g} s (sampled lag / per-poll delay)",
                f"{fmt(lag, 3)} s / {fmt(delay, 3)} s",
                None if worst is None else worst < LAG_TARGET,
            )
        )
        targets.append(
            _target(
                f"{s['engine']}: peak RSS < {RSS_TARGET_MB:g} MB with {s['registered']} registered",
                f"{a['peak_rss_mb']} MB",
                a["peak_rss_mb"] < RSS_TARGET_MB,
            )
        )
    return targets


def _ample_targets(ample: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Detection within the poll interval, then callback latency, per tracker client."""
    trackers = [c for c in (ample or {}).get("clients", []) if c["client"] == "tracker"]
    targets = []
    for c in trackers:
        d = c["detection_minus_interval_seconds"]
        targets.append(
            _target(
                f"{c['engine']} {c['scheduler']}: detection p99 <= the poll interval in effect"
                f" + {DETECTION_SLACK * 1000:g} ms (p99 of detection minus that interval)",
                f"{fmt(d['p99'], 3)} s (detection p99 {fmt(c['detection_seconds']['p99'], 3)} s,"
                f" interval p99 {fmt(c['interval_at_completion_seconds']['p99'], 3)} s)",
                None if d["p99"] is None else d["p99"] <= DETECTION_SLACK,
            )
        )
    for c in trackers:
        v = c["callback_ms"]["p99"]
        targets.append(
            _target(
                f"{c['engine']} {c['scheduler']}: callback p99 < {CALLBACK_TARGET_MS:g} ms",
                f"{fmt(v, 1)} ms",
                None if v is None else v < CALLBACK_TARGET_MS,
            )
        )
    return targets


def _tight_targets(tight: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not tight:
        return []
    targets = []
    for name, r in tight["ratios"].items():
        if not name.endswith("/ adaptive"):
            continue
        v = r["detection_p95"]
        targets.append(
            _target(
                f"{name.replace(' / adaptive', '')} vs adaptive at --max-rps"
                f" {tight['max_rps']:g}: detection p95 >= {BUDGET_RATIO_TARGET:g}x lower",
                f"x{fmt(v)}",
                None if v is None else v >= BUDGET_RATIO_TARGET,
            )
        )
    return targets
