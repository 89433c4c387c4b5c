"""Which parts of an output are archived, and when the planner asks for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.unit.test_observe import state
from tracker.archive.archiver import GIVE_UP_AFTER, failure_text, retry_at
from tracker.archive.download import DownloadFailed
from tracker.archive.outputs import MAX_FILES, output_urls
from tracker.config import DEFAULT_ARCHIVE_RETRY_SCHEDULE as RETRY_DELAYS
from tracker.domain import ArtifactJob
from tracker.poll.observe import parse_prediction, plan_observation

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_urls_are_found_in_strings_lists_and_objects_in_order() -> None:
    output = {
        "video": "https://f.example/v.mp4",
        "frames": ["http://f.example/1.png", {"thumb": "https://f.example/t.png"}, 3],
        "text": "a caption, not a URL",
        "seed": 42,
        "empty": None,
    }
    assert output_urls(output) == (
        (0, "https://f.example/v.mp4"),
        (1, "http://f.example/1.png"),
        (2, "https://f.example/t.png"),
    )
    assert output_urls("https://f.example/one.webp") == ((0, "https://f.example/one.webp"),)
    assert output_urls(None) == () == output_urls(["data:image/png;base64,AAAA", "ftp://x/y"])


def test_hostile_outputs_are_bounded() -> None:
    assert len(output_urls([f"https://f.example/{i}" for i in range(10_000)])) == MAX_FILES
    deep: object = "https://f.example/deep.png"
    for _ in range(50):
        deep = [deep]
    assert output_urls(deep) == ()
    odd = ["https://f.example/a b", "https://f.example/\x00", "https://" + "a" * 5000]
    assert output_urls(odd) == ()
    assert output_urls(["HTTPS://F.EXAMPLE/UPPER.PNG"]) == ((0, "HTTPS://F.EXAMPLE/UPPER.PNG"),)


def plan(previous: str | None, body: dict[str, object], **kwargs: object):  # type: ignore[no-untyped-def]
    st = state(status=previous, **kwargs)
    return plan_observation(st, parse_prediction({"id": st.id, **body}, st.id), NOW)


def test_the_planner_names_files_once_the_prediction_succeeded() -> None:
    out = ["https://f.example/1.png", "https://f.example/2.png"]
    done = plan("processing", {"status": "succeeded", "output": out})
    assert done.artifacts == ((0, out[0]), (1, out[1]))
    # seen succeeded again with the same output: nothing new
    assert plan("succeeded", {"status": "succeeded", "output": out}, output=out).artifacts == ()
    # an output that grew after success is looked at again
    more = plan("succeeded", {"status": "succeeded", "output": [*out, "https://f.example/3"]})
    assert len(more.artifacts) == 3
    # running outputs and failed predictions are not archived
    assert plan("starting", {"status": "processing", "output": out}).artifacts == ()
    assert plan("processing", {"status": "failed", "output": out}).artifacts == ()
    # success after the output was stored while running: the stored output counts
    late = plan("processing", {"status": "succeeded", "output": None}, output=out)
    assert late.artifacts == ((0, out[0]), (1, out[1]))


def job(attempts: int = 0, age: timedelta = timedelta(0), removed: bool = False) -> ArtifactJob:
    return ArtifactJob(1, "p", 0, "https://f.example/x", attempts, NOW - age, removed)


def test_retries_back_off_then_give_up() -> None:
    passing = DownloadFailed("HTTP 404 from f.example", retry=True)
    delays = [(retry_at(job(n), passing, NOW) - NOW).total_seconds() for n in range(10)]  # type: ignore[operator]
    assert delays[: len(RETRY_DELAYS)] == list(RETRY_DELAYS)
    assert delays[-1] == RETRY_DELAYS[-1]
    assert retry_at(job(age=GIVE_UP_AFTER), passing, NOW) is None
    assert retry_at(job(removed=True), passing, NOW) is None
    final = DownloadFailed("larger than 2 GiB", retry=False)
    assert retry_at(job(), final, NOW) is None
    assert retry_at(job(attempts=5), passing, NOW, (1.0, 2.0)) == NOW + timedelta(seconds=2)
    assert retry_at(job(), passing, NOW, ()) is None  # no retries at all
    assert failure_text(job(), final, None) == "larger than 2 GiB"
    assert failure_text(job(removed=True), passing, None).endswith("removed the output")
    assert "given up 3 h after" in failure_text(job(age=GIVE_UP_AFTER), passing, None)
    assert failure_text(job(), passing, NOW) == "HTTP 404 from f.example"
    asked = DownloadFailed("HTTP 429 from f.example", retry=True, retry_after=120)
    assert retry_at(job(), asked, NOW) == NOW + timedelta(seconds=120)
    greedy = DownloadFailed("HTTP 503 from f.example", retry=True, retry_after=10**9)
    assert retry_at(job(), greedy, NOW) == NOW + timedelta(hours=1)
