"""The archive benchmark's report: a table per part, the goals and the checks."""

from __future__ import annotations

from typing import Any

#: the daemon's peak RSS archiving one 1 GiB output (issue 15, item 8), MB
RSS_GOAL_MB = 150.0
#: polls per daemon CPU-second with archiving on, at least this share of off's
POLLS_GOAL_RATIO = 0.90


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def size_text(size: int) -> str:
    for unit, name in ((2**30, "GiB"), (2**20, "MiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size / 1e6:g} MB"


# -- goals and checks --------------------------------------------------------------------------


def _line(kind: str, what: str, value: str, met: bool | None) -> dict[str, Any]:
    return {"kind": kind, "what": what, "value": value, "met": met}


def evaluate(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A line per goal (RSS, polls) and per check (what was stored is right)."""
    lines = []
    for r in report.get("throughput", []):
        lines.append(_stored_check(r, f"throughput {r['engine']} {r['storage']}"))
    for r in report.get("rss", []):
        peak = r["daemon"]["peak_rss_mb"]
        lines.append(
            _line(
                "goal",
                f"{r['engine']} {r['storage']}: daemon peak RSS < {RSS_GOAL_MB:g} MB archiving"
                f" one {size_text(r['file_bytes'])} output",
                f"{fmt(peak)} MB (VmHWM; {fmt(r['daemon']['rss_at_ready_mb'])} MB once started)",
                peak < RSS_GOAL_MB,
            )
        )
        lines.append(_stored_check(r, f"rss {r['engine']} {r['storage']}"))
    for p in report.get("polls", []):
        if p.get("method") == "paired":
            ratio = p["ratio_pairs_median"]
            how = "median of the pairs run at the same time"
            shown = ", ".join(f"x{fmt(r, 3)}" for r in p["pair_ratios"])
            figure = f"pairs {shown}: median x{fmt(ratio, 3)} ({_drop(ratio)})"
        else:
            ratio = p["ratio_best"]
            how = "best run of each"
            figure = (
                f"on {fmt(p['on']['best'])} / off {fmt(p['off']['best'])} = x{fmt(ratio, 3)}"
                f" ({_drop(ratio)})"
            )
        lines.append(
            _line(
                "goal",
                f"{p['engine']}: polls per daemon CPU-second with archiving on >="
                f" {POLLS_GOAL_RATIO:.0%} of off ({how})",
                figure,
                None if ratio is None else ratio >= POLLS_GOAL_RATIO,
            )
        )
        lines.append(_polls_check(p))
    return lines


def _drop(ratio: float | None) -> str:
    if ratio is None:
        return "no figure"
    change = (1 - ratio) * 100
    return f"{change:.1f} % fewer" if change >= 0 else f"{-change:.1f} % more"


def _stored_check(r: dict[str, Any], name: str) -> dict[str, Any]:
    w, c, d = r["window"], r["checks"], r["daemon"]
    ok = c["ok"] and w["stored"] == w["artifacts"] and d["exit_code"] == 0 and not d["timed_out"]
    value = (
        f"{w['stored']}/{w['artifacts']} stored, {c['rows_checked']} rows' size and sha256"
        f" as expected_sha256, {c['objects_read_back']} read back and hashed"
    )
    if not ok:
        value += f"; wrong: {c['rows_wrong'] + c['objects_wrong']}, errors {w['errors']}"
        value += f", daemon exit {d['exit_code']}"
    return _line("check", f"{name}: every file stored whole", value, ok)


def _polls_check(p: dict[str, Any]) -> dict[str, Any]:
    wrong = []
    for mode, runs in p["runs"].items():
        for r in runs:
            stored, files = r["artifacts"]["stored"], r["file_requests"]
            want = p["predictions"] if mode == "on" else 0
            if stored != want or files < want or (mode == "off" and files):
                wrong.append(f"{mode} run {r['run']}: {stored} stored, {files} downloads")
            if r["daemon"]["exit_code"] != 0:
                wrong.append(f"{mode} run {r['run']}: exit {r['daemon']['exit_code']}")
    value = "; ".join(wrong) or (f"on: {p['predictions']} files stored per run; off: no download")
    return _line(
        "check", f"polls {p['engine']}: archiving did what each mode says", value, not wrong
    )


# -- printing ------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    s = report["settings"]
    print(
        f"\narchive benchmark ({'quick' if s['quick'] else 'full'}), {report['date']}:"
        f" {m['nproc']} CPUs ({m.get('cpu', '?')}), {m.get('memory_gb', '?')} GB,"
        f" Python {m['python']}, SQLite {m['sqlite']}; load average {m['loadavg_start']}"
        f" at start, {m.get('loadavg_end')} at end; {report['seconds']:.0f} s"
    )
    if report.get("throughput"):
        print_throughput(report["throughput"], s)
    if report.get("rss"):
        print_rss(report["rss"])
    if report.get("polls"):
        print_polls(report["polls"])
    print("\ngoals and checks")
    for g in report["goals"]:
        state = {True: "met" if g["kind"] == "goal" else "ok", False: "NOT MET", None: "n/a"}
        text = state[g["met"]] if g["kind"] == "goal" or g["met"] is not False else "FAILED"
        print(f"  [{text:^7}] {g['what']}: {g['value']}")


def print_throughput(rows: list[dict[str, Any]], s: dict[str, Any]) -> None:
    print(
        f"\nthroughput: {s['files']} files of {size_text(s['file_size'])},"
        f" {s['files_per_prediction']} per prediction; MB = 10^6 bytes; from the first"
        " artifact's created_at to the last stored_at"
    )
    print(
        f"{'engine':<11}{'storage':<8}{'files':>6}{'MB':>8}{'seconds':>9}{'MB/s':>8}"
        f"{'daemon CPU-s':>13}{'sim CPU-s':>10}{'moto CPU-s':>11}{'peak RSS MB':>12}"
        f"{'load':>7}"
    )
    for r in rows:
        w, d = r["window"], r["daemon"]
        moto = r["benchmark_process_cpu_seconds"] if r["storage"] == "s3" else None
        print(
            f"{r['engine']:<11}{r['storage']:<8}{w['stored']:>6}{w['bytes'] / 1e6:>8.1f}"
            f"{fmt(w['seconds'], 2):>9}{fmt(r['mb_per_second']):>8}"
            f"{fmt(d['cpu_seconds_after_ready'], 2):>13}{fmt(r['simulator_cpu_seconds'], 2):>10}"
            f"{fmt(moto, 2):>11}{fmt(d['peak_rss_mb']):>12}{r['loadavg_start'][0]:>7.2f}"
        )


def print_rss(rows: list[dict[str, Any]]) -> None:
    print("\nrss: one output file, the daemon's memory from /proc (MB = 2^20 bytes)")
    print(
        f"{'engine':<11}{'storage':<8}{'file':>8}{'seconds':>9}{'MB/s':>8}{'RSS started':>12}"
        f"{'peak VmHWM':>11}{'sampled max':>12}{'goal':>9}"
    )
    for r in rows:
        w, d = r["window"], r["daemon"]
        met = "met" if d["peak_rss_mb"] < RSS_GOAL_MB else "NOT MET"
        print(
            f"{r['engine']:<11}{r['storage']:<8}{size_text(r['file_bytes']):>8}"
            f"{fmt(w['seconds'], 2):>9}{fmt(r['mb_per_second']):>8}"
            f"{fmt(d['rss_at_ready_mb']):>12}{fmt(d['peak_rss_mb']):>11}"
            f"{fmt(d['sampled_rss_max_mb']):>12}{met:>9}"
        )


def print_polls(rows: list[dict[str, Any]]) -> None:
    first = rows[0]
    print(
        f"\npolls: {first['predictions']:,} predictions (one PNG each, run median"
        f" {first['run_median_seconds']:g} s) registered over {first['arrival_seconds']:g} s,"
        f" polled every {first['interval_seconds']:g} s; polls per daemon CPU-second from"
        " start to exit"
    )
    print(
        f"{'engine':<11}{'archive':<8}{'runs: polls/CPU-s':>22}{'best':>8}{'median':>8}"
        f"{'polls/pred':>11}{'daemon CPU':>11}{'sim CPU':>8}{'seconds':>9}{'load':>7}"
    )
    for p in rows:
        for mode in ("off", "on"):
            runs = p["runs"][mode]
            each = ", ".join(fmt(r["polls_per_cpu_second"], 0) for r in runs)
            print(
                f"{p['engine']:<11}{mode:<8}{each:>22}{fmt(p[mode]['best'], 0):>8}"
                f"{fmt(p[mode]['median'], 0):>8}"
                f"{_mean(runs, 'polls_per_prediction'):>11.1f}"
                f"{_mean(runs, 'daemon_cpu_share'):>11.2f}"
                f"{_mean(runs, 'simulator_cpu_share'):>8.2f}"
                f"{_mean(runs, 'seconds'):>9.1f}{runs[0]['loadavg_start'][0]:>7.2f}"
            )
        cost = p["cost"]
        print(
            f"  {p['engine']}: on / off x{fmt(p['ratio_best'], 3)} best"
            f" ({_drop(p['ratio_best'])}), x{fmt(p['ratio_median'], 3)} median;"
            f" daemon CPU {fmt(cost['ms_per_poll'], 2)} ms per poll,"
            f" {fmt(cost['ms_per_file'], 2)} ms per archived file beyond its polls"
            f" (in the kernel: {fmt(cost.get('system_ms_per_poll'), 2)} ms per poll,"
            f" {fmt(cost.get('system_ms_per_file'), 2)} ms per file)"
        )


def _mean(runs: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in runs if r[key] is not None]
    return sum(values) / len(values) if values else 0.0
