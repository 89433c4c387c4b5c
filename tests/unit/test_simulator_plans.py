"""Plans and lifecycles of simulated predictions, driven by a fake clock (no I/O)."""

from __future__ import annotations

import json
import re
import socket
from datetime import datetime
from typing import Any

import pytest

from tracker.simulator import (
    Fault,
    Outcome,
    PredictionPlan,
    SimConfig,
    SimulatedPrediction,
    plan_for_id,
    scenario_of,
)
from tracker.simulator.server import TokenBucket
from tracker.simulator.targets import LoopbackResolver, is_loopback_host

T0 = 1_752_305_274.577
BASE = "http://127.0.0.1:9/v1"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def make(
    plan: PredictionPlan, config: SimConfig | None = None, prediction_id: str = "p-1"
) -> SimulatedPrediction:
    """A prediction created at ``T0``."""
    return SimulatedPrediction(prediction_id, plan, config or SimConfig(), created_at=T0)


def timeline(
    prediction: SimulatedPrediction, until: float, step: float = 0.01
) -> list[dict[str, Any]]:
    """Snapshots every ``step`` seconds from ``T0`` to ``T0 + until``."""
    count = round(until / step) + 1
    return [prediction.snapshot(T0 + i * step, BASE) for i in range(count)]


def statuses(snapshots: list[dict[str, Any]]) -> list[str]:
    """The distinct statuses in order of appearance."""
    seen: list[str] = []
    for snapshot in snapshots:
        if not seen or seen[-1] != snapshot["status"]:
            seen.append(snapshot["status"])
    return seen


def parse(timestamp: str) -> float:
    """An RFC 3339 ``...Z`` timestamp as epoch seconds."""
    assert TIMESTAMP.fullmatch(timestamp), timestamp
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


# -- status sequences -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("succeeded", ["starting", "processing", "succeeded"]),
        ("failed", ["starting", "processing", "failed"]),
        ("canceled", ["starting", "processing", "canceled"]),
        ("aborted", ["starting", "aborted"]),
        (None, ["starting", "processing"]),
    ],
)
def test_each_outcome_has_its_status_sequence(outcome: Outcome | None, expected: list[str]) -> None:
    prediction = make(PredictionPlan(outcome=outcome, queue_seconds=0.5, run_seconds=1.0))
    assert statuses(timeline(prediction, until=3.0)) == expected


def test_never_ending_prediction_is_still_processing_much_later() -> None:
    prediction = make(PredictionPlan(outcome=None, queue_seconds=0.1, run_seconds=0.1))
    late = prediction.snapshot(T0 + 86_400, BASE)
    assert late["status"] == "processing"
    assert late["completed_at"] is None
    assert late["metrics"] == {}


def test_extra_statuses_are_shown_between_starting_and_processing() -> None:
    plan = PredictionPlan(
        queue_seconds=0.3,
        run_seconds=0.5,
        extra_statuses=["queued_elsewhere", "warming"],
        extra_status_seconds=0.2,
    )
    snapshots = timeline(make(plan), until=2.0)
    assert statuses(snapshots) == [
        "starting",
        "queued_elsewhere",
        "warming",
        "processing",
        "succeeded",
    ]
    waiting = [s for s in snapshots if s["status"] in ("queued_elsewhere", "warming")]
    assert all(s["started_at"] is None and s["logs"] == "" for s in waiting)


def test_timings_follow_the_plan() -> None:
    prediction = make(PredictionPlan(queue_seconds=1.0, run_seconds=2.5))
    assert prediction.status_at(T0 + 0.99) == "starting"
    assert prediction.status_at(T0 + 1.0) == "processing"
    assert prediction.status_at(T0 + 3.49) == "processing"
    assert prediction.status_at(T0 + 3.5) == "succeeded"


def test_speed_divides_every_duration() -> None:
    plan = PredictionPlan(queue_seconds=1.0, run_seconds=3.0, delay_seconds=1.0)
    prediction = make(plan, SimConfig(speed=4.0, data_removed_after_seconds=100))
    assert prediction.started_at == pytest.approx(T0 + 0.25)
    assert prediction.ended_at == pytest.approx(T0 + 1.0)
    assert prediction.removed_at == pytest.approx(T0 + 26.0)
    assert prediction.delay == pytest.approx(0.25)


# -- fields over the lifecycle ----------------------------------------------------------


def test_fields_before_start_while_running_and_after_success() -> None:
    prediction = make(PredictionPlan(queue_seconds=1.0, run_seconds=2.0), prediction_id="ok-7")
    waiting = prediction.snapshot(T0 + 0.5, BASE)
    running = prediction.snapshot(T0 + 2.0, BASE)
    done = prediction.snapshot(T0 + 3.5, BASE)

    assert waiting["started_at"] is None
    assert waiting["logs"] == ""
    assert waiting["output"] is None
    assert waiting["metrics"] == {}
    assert parse(waiting["created_at"]) == pytest.approx(T0, abs=1e-5)

    assert parse(running["started_at"]) == pytest.approx(T0 + 1.0, abs=1e-5)
    assert running["output"] is None
    assert running["metrics"] == {}
    assert running["completed_at"] is None

    assert done["status"] == "succeeded"
    assert done["output"] == "http://127.0.0.1:9/files/ok-7/0/output.png"
    assert done["error"] is None
    predict_time = parse(done["completed_at"]) - parse(done["started_at"])
    assert done["metrics"]["predict_time"] == pytest.approx(predict_time, abs=1e-5)
    assert done["metrics"]["predict_time"] == pytest.approx(2.0)
    assert done["metrics"]["image_count"] == 1
    assert done["urls"]["get"] == f"{BASE}/predictions/ok-7"
    assert done["data_removed"] is False
    assert set(done) >= {"id", "model", "version", "input", "urls", "created_at"}


def test_failed_prediction_has_error_and_no_output() -> None:
    plan = PredictionPlan(outcome="failed", queue_seconds=0, run_seconds=1, error="boom")
    done = make(plan).snapshot(T0 + 2, BASE)
    assert done["error"] == "boom"
    assert done["output"] is None
    assert "boom" in done["logs"]
    assert "image_count" not in done["metrics"]
    assert done["metrics"]["predict_time"] == pytest.approx(1.0)


def test_generated_error_is_a_message() -> None:
    done = make(plan_for_id("fail-3", SimConfig())).snapshot(T0 + 1e4, BASE)
    assert done["status"] == "failed"
    assert isinstance(done["error"], str)
    assert done["error"]


def test_aborted_never_starts() -> None:
    prediction = make(PredictionPlan(outcome="aborted", queue_seconds=0.5, run_seconds=1))
    for snapshot in timeline(prediction, until=2.0):
        assert snapshot["started_at"] is None
        assert snapshot["logs"] == ""
        assert snapshot["output"] is None
        assert snapshot["metrics"] == {}
    done = prediction.snapshot(T0 + 2, BASE)
    assert done["status"] == "aborted"
    assert parse(done["completed_at"]) == pytest.approx(T0 + 0.5, abs=1e-5)


def test_output_override_is_served_on_success() -> None:
    output = ["https://x.test/a.png", "https://x.test/b.png"]
    done = make(PredictionPlan(queue_seconds=0, run_seconds=1, output=output)).snapshot(
        T0 + 5, BASE
    )
    assert done["output"] == output
    assert done["metrics"]["image_count"] == 2


def test_generated_output_is_one_url_per_file_on_the_simulator() -> None:
    images = make(PredictionPlan(queue_seconds=0, run_seconds=1, output_files=3), prediction_id="m")
    done = images.snapshot(T0 + 5, BASE)
    assert done["output"] == [f"http://127.0.0.1:9/files/m/{i}/output.png" for i in range(3)]
    assert done["metrics"]["image_count"] == 3
    assert "Total safe images: 3 out of 3" in done["logs"]
    assert images.snapshot(T0 + 5, "http://[::1]:7/v1")["output"][0].startswith("http://[::1]:7/")
    big = make(PredictionPlan(queue_seconds=0, run_seconds=1, output_bytes=10), prediction_id="b")
    done = big.snapshot(T0 + 5, BASE)
    assert done["output"] == "http://127.0.0.1:9/files/b/0/output.bin"
    assert "image_count" not in done["metrics"]
    assert [(f.index, f.size, f.length) for f in big.files] == [(0, 10, 10)]


def test_only_succeeded_generated_outputs_have_files() -> None:
    assert make(PredictionPlan(outcome="failed")).files == ()
    assert make(PredictionPlan(output="https://x.test/a.png")).files == ()
    assert len(make(PredictionPlan(output_files=2)).files) == 2


def test_non_image_output_has_no_image_count() -> None:
    done = make(PredictionPlan(queue_seconds=0, run_seconds=1, output="hello")).snapshot(
        T0 + 5, BASE
    )
    assert done["output"] == "hello"
    assert "image_count" not in done["metrics"]


def test_data_is_removed_after_the_configured_time() -> None:
    config = SimConfig(data_removed_after_seconds=10)
    prediction = make(PredictionPlan(queue_seconds=0, run_seconds=1), config)
    kept = prediction.snapshot(T0 + 10.99, BASE)
    removed = prediction.snapshot(T0 + 11.0, BASE)
    assert kept["data_removed"] is False
    assert kept["output"] is not None
    assert removed["data_removed"] is True
    assert removed["output"] is None
    assert removed["status"] == "succeeded"


def test_never_ending_prediction_is_never_removed() -> None:
    prediction = make(PredictionPlan(outcome=None), SimConfig(data_removed_after_seconds=1))
    assert prediction.snapshot(T0 + 1e3, BASE)["data_removed"] is False


# -- logs -------------------------------------------------------------------------------


def assert_cumulative(snapshots: list[dict[str, Any]]) -> list[str]:
    """Check that every answer's logs extend the previous ones; return the distinct logs."""
    distinct: list[str] = []
    for snapshot in snapshots:
        logs = snapshot["logs"]
        if distinct:
            assert logs.startswith(distinct[-1])
        if not distinct or logs != distinct[-1]:
            distinct.append(logs)
    return distinct


def test_generated_logs_grow_one_line_per_interval() -> None:
    config = SimConfig(log_interval_seconds=0.5)
    prediction = make(PredictionPlan(queue_seconds=0.5, run_seconds=4.0), config)
    distinct = assert_cumulative(timeline(prediction, until=5.0))
    assert distinct[0] == ""
    assert distinct[1].startswith("Using seed: ")
    line_counts = [logs.count("\n") for logs in distinct]
    assert line_counts[:9] == list(range(9))
    assert re.search(r"step \d+/7 \|", distinct[3])
    final = distinct[-1]
    assert "100%" in final
    assert final.endswith("seconds\n")
    assert "Total safe images: 1 out of 1" in final


def test_explicit_log_lines_spread_over_the_run() -> None:
    lines = ["alpha", "beta", "gamma", "delta"]
    prediction = make(PredictionPlan(queue_seconds=0, run_seconds=2.0, log_lines=lines))
    assert prediction.snapshot(T0 + 0.1, BASE)["logs"] == "alpha\n"
    assert prediction.snapshot(T0 + 1.1, BASE)["logs"] == "alpha\nbeta\ngamma\n"
    distinct = assert_cumulative(timeline(prediction, until=3.0))
    assert distinct[-1] == "alpha\nbeta\ngamma\ndelta\n"


def test_canceled_logs_stop_at_cancellation() -> None:
    prediction = make(PredictionPlan(outcome="canceled", queue_seconds=0, run_seconds=1.0))
    distinct = assert_cumulative(timeline(prediction, until=2.0))
    assert prediction.snapshot(T0 + 1.5, BASE)["logs"] == distinct[-1]
    assert "Total safe images" not in distinct[-1]


def test_never_ending_logs_keep_growing() -> None:
    prediction = make(PredictionPlan(outcome=None, queue_seconds=0), SimConfig())
    early = prediction.snapshot(T0 + 10, BASE)["logs"]
    late = prediction.snapshot(T0 + 100, BASE)["logs"]
    assert late.startswith(early)
    assert late.count("\n") == 201
    assert early.count("\n") == 21


def test_unicode_logs_hold_non_ascii_text() -> None:
    prediction = make(plan_for_id("unicode-1", SimConfig()), prediction_id="unicode-1")
    distinct = assert_cumulative(timeline(prediction, until=30.0, step=0.05))
    final = distinct[-1]
    for text in ("🚀", "é", "步骤", "ステップ", "👩\u200d💻", "𝄞", "Прогресс"):
        assert text in final
    decoded = json.loads(prediction.body(T0 + 30, BASE))
    assert decoded["logs"] == final


def test_big_logs_exceed_a_megabyte_in_lines_of_a_few_kilobytes() -> None:
    plan = plan_for_id("biglogs-1", SimConfig())
    prediction = make(plan, prediction_id="biglogs-1")
    assert prediction.started_at is not None
    assert prediction.ended_at is not None
    middle = (prediction.started_at + prediction.ended_at) / 2
    halfway = prediction.snapshot(middle, BASE)["logs"]
    final = prediction.snapshot(prediction.ended_at, BASE)["logs"]
    assert final.startswith(halfway)
    assert 0 < len(halfway) < len(final)
    assert len(final.encode()) > 1_200_000
    sizes = [len(line) for line in final.splitlines()]
    assert min(sizes) >= 2000
    assert max(sizes) <= 4200


# -- scenarios and determinism ----------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction_id", "scenario"),
    [
        ("ok-1", "ok"),
        ("w44zs9cet5rmc0cqzp49gpkhf8", "ok"),
        ("whatever-1", "ok"),
        ("fail", "fail"),
        ("fail-x-y", "fail"),
        ("FAIL-2", "fail"),
        ("failing-1", "ok"),
        ("biglogs-a", "biglogs"),
        ("quick_1", "ok"),
    ],
)
def test_scenario_is_the_prefix_before_the_first_dash(prediction_id: str, scenario: str) -> None:
    assert scenario_of(prediction_id) == scenario


def test_scenario_plans() -> None:
    config = SimConfig()
    assert plan_for_id("ok-1", config).outcome == "succeeded"
    assert plan_for_id("fail-1", config).outcome == "failed"
    assert plan_for_id("cancel-1", config).outcome == "canceled"
    assert plan_for_id("abort-1", config).outcome == "aborted"
    assert plan_for_id("forever-1", config).outcome is None
    assert plan_for_id("gone-1", config).not_found
    assert plan_for_id("flaky-1", config).faults == [
        Fault.http(500),
        Fault.http(502),
        Fault.http(503),
    ]
    assert plan_for_id("junk-1", config).faults == [Fault.html(), Fault.not_prediction()]
    assert plan_for_id("ratelimit-1", config).faults == [Fault.http(429, retry_after=2)]
    assert plan_for_id("weird-1", config).extra_statuses == ["queued_elsewhere"]
    assert plan_for_id("slow-1", config).delay_seconds == 1.5
    quick = plan_for_id("quick-1", config)
    assert (quick.queue_seconds, quick.run_seconds) == (0.2, 0.5)
    assert plan_for_id("multi-1", config).output_files == 4
    assert plan_for_id("bigfile-1", config).output_bytes == 64 * 1024 * 1024
    assert plan_for_id("bigfile-1", SimConfig(bigfile_bytes=5)).output_bytes == 5
    assert plan_for_id("flakyfile-1", config).file_faults == [503, "cut"]
    assert plan_for_id("ok-1", config).file_faults == []


def test_faults_apply_to_the_first_requests_in_order() -> None:
    prediction = make(plan_for_id("flaky-1", SimConfig()), prediction_id="flaky-1")
    got = [prediction.next_fault() for _ in range(5)]
    assert got == [Fault.http(500), Fault.http(502), Fault.http(503), None, None]


def test_same_seed_and_id_give_the_same_plan_and_answers() -> None:
    config = SimConfig(seed=42)
    assert plan_for_id("ok-1", config) == plan_for_id("ok-1", SimConfig(seed=42))
    first = make(plan_for_id("ok-1", config), config, "ok-1")
    second = make(plan_for_id("ok-1", config), config, "ok-1")
    for now in (T0, T0 + 1, T0 + 3, T0 + 100):
        assert first.body(now, BASE) == second.body(now, BASE)


def test_different_seeds_or_ids_give_different_plans() -> None:
    def timing(prediction_id: str, seed: int) -> tuple[float, float]:
        plan = plan_for_id(prediction_id, SimConfig(seed=seed))
        return plan.queue_seconds, plan.run_seconds

    assert timing("ok-1", 1) != timing("ok-1", 2)
    assert timing("ok-1", 1) != timing("ok-2", 1)
    runs = [timing(f"ok-{i}", 0)[1] for i in range(200)]
    assert 3.0 < sorted(runs)[100] < 5.0


def test_config_timings_feed_generated_plans() -> None:
    plan = plan_for_id("ok-1", SimConfig(queue_seconds=0, run_median_seconds=10, run_sigma=0))
    assert plan.queue_seconds == 0
    assert plan.run_seconds == pytest.approx(10)


def test_body_is_cached_while_the_state_is_unchanged() -> None:
    prediction = make(PredictionPlan(queue_seconds=1, run_seconds=2))
    first = prediction.body(T0 + 0.1, BASE)
    assert prediction.body(T0 + 0.2, BASE) is first
    later = prediction.body(T0 + 1.2, BASE)
    assert later is not first
    assert json.loads(later) == prediction.snapshot(T0 + 1.2, BASE)


# -- JSON forms and validation ----------------------------------------------------------


def test_plan_json_round_trip() -> None:
    plan = PredictionPlan(
        outcome="failed",
        queue_seconds=0.1,
        log_lines=["a"],
        extra_statuses=["x"],
        faults=[Fault.http(429, retry_after=3), Fault.delay(0.5), Fault.html()],
        error="nope",
        webhook="http://localhost:8000/hook?x=1",
        webhook_events_filter=["start", "completed"],
        output_files=2,
        output_bytes=1000,
        file_faults=[503, "cut", "pass"],
    )
    data = json.loads(json.dumps(plan.to_json()))
    assert PredictionPlan.from_json(data) == plan


def test_fault_shorthands() -> None:
    plan = PredictionPlan.from_json(
        {"faults": [500, "html", "not_prediction", "pass", {"kind": "delay", "seconds": 2}]}
    )
    assert plan.faults == [
        Fault.http(500),
        Fault.html(),
        Fault.not_prediction(),
        Fault.passthrough(),
        Fault.delay(2),
    ]
    assert plan.outcome == "succeeded"


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"outcome": "exploded"},
        {"colour": "red"},
        {"run_seconds": -1},
        {"queue_seconds": "soon"},
        {"faults": [700]},
        {"faults": ["boom"]},
        {"faults": [{"kind": "http", "status": 500, "when": 1}]},
        {"faults": [{"kind": "http", "retry_after": 1.5}]},
        {"faults": 500},
        {"extra_statuses": ["processing"]},
        {"log_lines": [1, 2]},
        {"outcome": ["failed"]},
        {"webhook": "http://example.com/hook"},
        {"webhook": 42},
        {"webhook": "http://localhost/", "webhook_events_filter": ["finished"]},
        {"webhook_events_filter": "completed"},
        {"output_files": 0},
        {"output_files": 101},
        {"output_files": True},
        {"output_bytes": -1},
        {"output_bytes": 1.5},
        {"file_faults": [200]},
        {"file_faults": ["html"]},
        {"file_faults": [{"kind": "http"}]},
        {"file_faults": 503},
    ],
)
def test_bad_plans_are_refused(data: object) -> None:
    with pytest.raises(ValueError):
        PredictionPlan.from_json(data)


@pytest.mark.parametrize(
    "settings",
    [
        {"speed": 0},
        {"fault_rate": 1.5},
        {"rate_limit_rps": 0},
        {"log_interval_seconds": -1},
        {"push_drop": 0.6, "push_late": 0.5},
        {"push_repeat": -0.1},
        {"push_timeout_seconds": 0},
        {"push_concurrency": 0},
        {"push_retries": -1},
        {"push_retries": 1.5},
        {"webhook_secret": ""},
        {"bigfile_bytes": -1},
        {"bigfile_bytes": 1.5},
    ],
)
def test_bad_configs_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimConfig(**settings)


def test_token_bucket_allows_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert not bucket.take(0.4)
    assert bucket.take(0.5)
    assert [bucket.take(10.0) for _ in range(3)] == [True, True, False]


def test_failed_and_canceled_runs_stop_before_full_progress() -> None:
    outcomes: tuple[Outcome, ...] = ("failed", "canceled")
    for outcome in outcomes:
        plan = PredictionPlan(outcome=outcome, queue_seconds=0, run_seconds=4)
        logs = make(plan).snapshot(T0 + 5, BASE)["logs"]
        assert "step 7/12 |  58%" in logs
        assert "100%" not in logs


def test_lone_surrogates_in_logs_are_escaped_not_fatal() -> None:
    plan = PredictionPlan(queue_seconds=0, run_seconds=0, log_lines=["bad \ud800 text", "é"])
    body = make(plan).body(T0 + 1, BASE)
    assert json.loads(body)["logs"] == "bad \ud800 text\né\n"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("128.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("::ffff:127.0.0.1", False),
        ("localhost.localdomain", False),
        ("example.com", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_hosts(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


async def test_the_push_resolver_knows_only_localhost() -> None:
    resolver = LoopbackResolver()
    answers = await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
    assert [a["host"] for a in answers] == ["127.0.0.1", "::1"]
    assert [a["host"] for a in await resolver.resolve("localhost", 80)] == ["127.0.0.1"]
    with pytest.raises(OSError):
        await resolver.resolve("example.com", 80)


def test_next_change_walks_the_timeline() -> None:
    plan = PredictionPlan(queue_seconds=1, run_seconds=2, log_lines=["a", "b", "c", "d"])
    prediction = make(plan)
    moments = []
    now = T0
    while (moment := prediction.next_change(now)) is not None:
        moments.append(round(moment - T0, 6))
        now = moment
    # started at 1 s with line a, then b, c, d every 0.5 s, ended at 3 s
    assert moments == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert prediction.next_change(T0 + 3) is None
    forever = make(PredictionPlan(outcome=None, queue_seconds=0, log_lines=["x"]))
    assert forever.next_change(T0 + 5) is None
    aborted = make(PredictionPlan(outcome="aborted", queue_seconds=1))
    assert aborted.next_change(T0) == T0 + 1
