"""Push + poll end to end, on SQLite and PostgreSQL: the simulator creates predictions
whose `webhook` is `tracker serve`'s /webhooks/upstream and pushes them as they
advance, losing about 30% of the pushes, repeating some and delivering some after the
end (two never push their end at all); nobody registers them. Every prediction is still
tracked to its end (the polls at --poll-max catch what the pushes did not say), nothing
is written twice, late pushes are recorded stale, and each pushed prediction is polled
only every --poll-max (counted from the simulator's own request log).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.clirun import fork_tracker
from tests.receiver import Receiver
from tests.serving import Running, rows, running_service, settings_for
from tracker.simulator import SimConfig, Simulator

SECRET = "whsec_" + "ZTJlLXB1c2gtc2VjcmV0LWZvci10aGUtc2ltdWxhdG9y"
#: predictions created on the simulator
COUNT = 24
#: of which the last ones ask for pushes at their start and of their logs only: no push
#: ever tells their end, whatever the pushes lost (the safety net always has work)
UNTOLD = 2
#: the service's --poll-max (seconds): the safety net's period
POLL_MAX = 1.5
SIM = SimConfig(
    queue_seconds=0.3,
    run_median_seconds=3.5,
    run_sigma=0.3,
    log_interval_seconds=0.3,
    webhook_secret=SECRET,
    push_drop=0.3,
    push_repeat=0.15,
    push_late=0.15,
    push_late_seconds=3.0,
    seed=14,
)


async def eventually(check: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return result


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(SIM)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def service(db_url: str, simulator: Simulator, receiver: Receiver) -> AsyncIterator[Running]:
    settings = settings_for(
        db_url,
        TRACKER_API_BASE=simulator.base_url,
        TRACKER_UPSTREAM_WEBHOOK_SECRET=SECRET,
        TRACKER_POLL_MIN="0.2",
        TRACKER_POLL_MAX=str(POLL_MAX),
        TRACKER_DEFAULT_WEBHOOK=receiver.url("ok/every-prediction"),
        TRACKER_DEFAULT_EVENTS="start,completed",
    )
    async with running_service(settings, with_daemon=True) as running:
        yield running


async def test_pushed_predictions_end_with_a_third_of_the_pushes_lost(
    service: Running, simulator: Simulator, receiver: Receiver, db_url: str
) -> None:
    hook = f"{service.url}/webhooks/upstream"
    async with httpx.AsyncClient(timeout=10) as http:
        created = [
            await http.post(
                f"{simulator.base_url}/predictions",
                json={"version": "v1", "input": {"n": n}, "webhook": hook}
                | ({"webhook_events_filter": ["start", "logs"]} if n >= COUNT - UNTOLD else {}),
            )
            for n in range(COUNT)
        ]
    ids = [answer.json()["id"] for answer in created]
    untold = set(ids[-UNTOLD:])
    pushes = simulator.pushes

    def all_done() -> bool:
        done = rows(db_url, "select count(*) from predictions where tracking = 'done'")
        # every push the simulator sends (late ones too) answered: a push still on its
        # way when the last prediction ends is not yet in upstream_pushes
        answered = all(p.delivered for p in pushes() if p.fate != "dropped")
        return done == [(COUNT,)] and answered

    await eventually(all_done, "every prediction to end and every push sent to be answered", 60)
    await eventually(
        lambda: (
            rows(db_url, "select count(*) from deliveries where state <> 'delivered'") == [(0,)]
        ),
        "the callbacks",
        15,
    )

    # Every prediction was registered by its pushes and ended as upstream says.
    assert sorted(rows(db_url, "select id, status, tracking from predictions")) == sorted(
        (pid, "succeeded", "done") for pid in ids
    )
    by_fate = Counter(p.fate for p in pushes())
    assert by_fate["dropped"] >= len(pushes()) // 5 and by_fate["repeated"] and by_fate["late"]
    # Predictions whose end no push told (the untold ones, and those whose `output` and
    # `completed` pushes were lost): only a poll can have found it.
    end_unpushed = set(ids) - {
        p.prediction_id for p in pushes() if p.status == "succeeded" and p.fate != "dropped"
    }
    assert untold <= end_unpushed, "an end was pushed: the safety net was not exercised"

    # Nothing was written twice.
    check_written_once(db_url, ids)
    delivered_ids = [r.webhook_id for r in receiver.received()]
    assert len(delivered_ids) == len(set(delivered_ids)) == 2 * COUNT  # start, completed
    finals = Counter(r.json["id"] for r in receiver.received() if r.json["status"] == "succeeded")
    assert set(finals) == set(ids)  # the `completed` of each, as upstream ended it

    # Every push that arrived was kept once (repeats were answered as duplicates); late
    # ones older than what was stored were recorded stale. (A late push can still be
    # news when the pushes before it were lost: the chains above show none went back.)
    sent = {p.webhook_id for p in pushes() if p.fate != "dropped"}
    receipts = dict(rows(db_url, "select webhook_id, outcome from upstream_pushes"))
    assert set(receipts) == sent
    late = {p.webhook_id for p in pushes() if p.fate == "late"}
    assert "stale" in {receipts[w] for w in late}

    # Pushed predictions were polled every --poll-max only (a GET answered 200 is a poll).
    registered = dict(
        rows(db_url, "select prediction_id, min(received_at) from upstream_pushes group by 1")
    )
    for pid in ids:
        polls = [r.at for r in simulator.requests(pid) if r.status_code == 200]
        first_push = epoch(registered[pid])
        if not polls:
            continue
        # Each push moves the next poll to --poll-max after it, so the polls are at
        # least that far apart, but for one claimed just before a push arrived: count.
        span = polls[-1] - first_push
        assert polls[0] - first_push >= POLL_MAX - 0.1, f"{pid}: first poll too soon"
        assert len(polls) <= span / POLL_MAX + 1, f"{pid}: {len(polls)} polls in {span:.1f} s"
    polled_ids = {pid for pid in ids if any(r.status_code == 200 for r in simulator.requests(pid))}
    assert end_unpushed <= polled_ids  # what the pushes did not say, a poll found


def epoch(moment: Any) -> float:
    if isinstance(moment, str):  # SQLite's text, UTC
        moment = datetime.fromisoformat(moment + "+00:00")
    return float(moment.timestamp())


def check_written_once(db_url: str, ids: list[str]) -> None:
    """Transitions form one chain per prediction, log pieces add up to the logs without
    a restart, and each callback got one `start` and one `completed`."""
    chains: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
    for pid, before, after in rows(
        db_url, "select prediction_id, from_status, to_status from status_transitions order by id"
    ):
        chains[pid].append((before, after))
    for pid in ids:
        chain = chains[pid]
        assert chain[0][0] is None, chain
        assert all(a[1] == b[0] for a, b in itertools.pairwise(chain)), chain
        assert [after for _, after in chain].count("succeeded") == 1, chain
    pieces: dict[str, list[str]] = defaultdict(list)
    for pid, piece, restarted in rows(
        db_url, "select prediction_id, text, restarted from prediction_logs order by seq"
    ):
        assert not restarted, f"{pid}: its logs were stored whole again"
        pieces[pid].append(piece)
    for pid, logs in rows(db_url, "select id, logs from predictions"):
        assert "".join(pieces[pid]) == logs
    events = Counter(rows(db_url, "select prediction_id, event from deliveries"))
    assert events == Counter({(pid, e): 1 for pid in ids for e in ("start", "completed")})


def test_demo_push_tracks_every_prediction_it_never_registered(tmp_path: Any) -> None:
    """`tracker demo --push`, as a user runs it: every prediction the simulator created
    ends `succeeded`, each was registered by its pushes, and the table says for each
    what was pushed and lost and how often it was polled."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    result = fork_tracker(  # as `python -m tracker demo --push`, forked (tests/clirun.py)
        ["demo", "--push", "--quiet", "--database-url", url], env, timeout=180, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    columns = ["id", "status", "transitions", "pushed", "lost", "applied", "stale", "polls"]
    header = lines.index("\t".join([*columns, "ended by"]))
    table = [line.split("\t") for line in lines[header + 1 :] if line.count("\t") == 8]
    assert len(table) == 8
    assert {row[1] for row in table} == {"succeeded"}
    assert {row[8] for row in table} <= {"push", "poll"}
    assert "pushes:" in result.stdout and "lost" in result.stdout
    pushed = dict(rows(url, "select prediction_id, count(*) from upstream_pushes group by 1"))
    assert set(pushed) == {row[0] for row in table}  # each registered by a push
    assert sum(int(row[3]) for row in table) >= len(pushed)
