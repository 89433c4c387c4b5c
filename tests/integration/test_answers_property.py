"""Property: whatever a 200 answer holds, polling it never raises and never leaves
the row untouched: it is either applied or recorded as an error on its prediction.

Arbitrary JSON (any code point, lone surrogates and NUL included, huge and
non-finite numbers, nesting on both sides of the limit), and bytes that are not
JSON at all, go through the real upstream client, the daemon's handling and the
store, on both engines. The HTTP layer is httpx's MockTransport: this test is
about what the answer holds, not how it travels.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tracker.config import Settings
from tracker.poll.building import build_daemon
from tracker.poll.upstream import UpstreamClient
from tracker.store.store import Store
from tracker.text.sanitize import MAX_JSON_DEPTH

KEY = "sk-property-secret-1234"
T0 = datetime(2026, 1, 1, tzinfo=UTC)

#: every code point: surrogates, NUL, controls, private use, unassigned
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
numbers = (
    st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e308, -1e308, 5e-324, 10**300])
)
scalars = st.none() | st.booleans() | numbers | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=16,
)


def nested(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


statuses = st.sampled_from(["starting", "processing", "succeeded", "failed", "canceled"]) | any_text
bodies = st.fixed_dictionaries(
    {"status": statuses},
    optional={
        "logs": any_text.map(lambda t: t + f" key {KEY}"),
        "output": st.builds(nested, json_values, st.integers(0, MAX_JSON_DEPTH + 20)),
        "metrics": st.dictionaries(st.sampled_from(["predict_time", "x"]), numbers | json_values),
        "error": json_values,
        "input": json_values,
        "model": any_text,
        "version": json_values,
        "urls": json_values,
        "created_at": any_text | numbers,
        "completed_at": any_text,
        "data_removed": json_values,
    },
)


def encode(body: Any) -> bytes:
    # ensure_ascii writes lone surrogates as \udXXX escapes; allow_nan writes NaN tokens.
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode()


answers = (
    bodies.map(encode)
    | json_values.map(encode)
    | st.binary(max_size=64)
    | st.integers(MAX_JSON_DEPTH - 2, 5_000).map(lambda n: b"[" * n + b"]" * n)
)


async def poll_once(store: Store, prediction_id: str, content: bytes) -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, content=content))
    async with httpx.AsyncClient(transport=transport) as http:
        upstream = UpstreamClient(http, "http://upstream.test/v1", KEY)
        daemon = build_daemon(store, upstream, Settings(name="prop", api_key=KEY))
        try:
            now = datetime.now(UTC)
            (state,) = store.claim_due(
                now=now, limit=1, owner="prop", lease_until=now + timedelta(seconds=60)
            )
            assert state.id == prediction_id
            await daemon.poller._poll(state)
        finally:
            daemon.db.shutdown()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=answers)
def test_any_answer_is_applied_or_recorded(store: Store, content: bytes) -> None:
    prediction_id = f"p-{uuid.uuid4().hex[:12]}"
    store.add_predictions([prediction_id], now=T0, first_poll_at=T0)
    asyncio.run(poll_once(store, prediction_id, content))
    with store.engine.connect() as conn:
        row = conn.execute(
            text(
                "select poll_count, error_count, claimed_by, logs, last_error"
                " from predictions where id = :id"
            ),
            {"id": prediction_id},
        ).one()
    store.forget([prediction_id])
    assert row.poll_count + row.error_count == 1, (content[:200], row)
    assert row.claimed_by is None
    assert KEY not in (row.logs or "") and KEY not in (row.last_error or "")
