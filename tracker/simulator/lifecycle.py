"""The life of one simulated prediction as a pure function of the clock.

:class:`SimulatedPrediction` turns a :class:`~tracker.simulator.scenarios.PredictionPlan`
and a creation time into the Replicate prediction object seen at any later moment. It does
no I/O and never reads the clock itself: callers pass ``now`` (epoch seconds), which makes
it testable with a fake clock. Answers are cached as encoded JSON and rebuilt only when the
visible state (status, number of log lines, data removal) changes. Its log lines and
their timing come from :mod:`tracker.simulator.runlogs`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tracker.simulator.files import OutputFile, output_files, output_value
from tracker.simulator.runlogs import ALL_LINES, run_logs, trailer_lines
from tracker.simulator.scenarios import (
    TERMINAL_STATUSES,
    Fault,
    PredictionPlan,
    SimConfig,
    id_rng,
)

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
_PROMPTS = (
    "Make the letters 3D",
    "A lighthouse at dusk, oil painting",
    "Turn this photo into a watercolor",
    "A corgi astronaut floating above the Earth",
)
_ERRORS = (
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 39.59 GiB total capacity)",
    "NSFW content detected. Try running it again, or try a different prompt.",
    "Prediction interrupted; please retry (code: PA)",
)
StateKey = tuple[str, int, bool, str]


def rfc3339(timestamp: float) -> str:
    """Epoch seconds as RFC 3339 UTC with microseconds, e.g. ``2025-07-12T07:27:54.577000Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SimulatedPrediction:
    """One prediction: its plan, its timeline and the answers it gives.

    Times are real epoch seconds: the plan's simulated durations are divided by
    ``config.speed`` once, here.
    """

    def __init__(
        self,
        prediction_id: str,
        plan: PredictionPlan,
        config: SimConfig,
        *,
        created_at: float,
    ) -> None:
        self.id = prediction_id
        self.plan = plan
        #: how it ends: the plan's outcome, or ``canceled`` once cancelled
        self.outcome = plan.outcome
        speed = config.speed
        self._removal_delay = config.data_removed_after_seconds / speed
        self.created_at = created_at
        waiting_end = created_at + plan.queue_seconds / speed
        self._waiting = [(created_at, "starting")]
        for status in plan.extra_statuses:
            self._waiting.append((waiting_end, status))
            waiting_end += plan.extra_status_seconds / speed
        self.started_at, self.ended_at = self._run_bounds(waiting_end, speed)
        self.removed_at = None if self.ended_at is None else self.ended_at + self._removal_delay
        #: log lines shown once ended (None: all of them, and the trailer)
        self._final_lines: int | None = None
        #: answers delayed by the plan are sent this many real seconds late
        self.delay = plan.delay_seconds / speed
        self.requests_seen = 0
        #: requests so far for each served output file, by index (for ``file_faults``)
        self.file_hits: Counter[int] = Counter()
        rng = id_rng(config.seed, prediction_id, "content")
        self._input = plan.input if plan.input is not None else _generated_input(rng)
        self._error = plan.error if plan.error is not None else rng.choice(_ERRORS)
        #: the files the generated output points at (none with an explicit ``output``)
        self.files: tuple[OutputFile, ...] = ()
        if plan.output is None and plan.outcome == "succeeded":
            self.files = output_files(
                prediction_id, seed=config.seed, count=plan.output_files, size=plan.output_bytes
            )
        took = (self.ended_at or 0.0) - (self.started_at or 0.0)
        trailer = trailer_lines(plan.outcome, took, self._image_count(), self._error)
        self._logs = run_logs(plan, config, rng, trailer)
        self._fixed = self._fixed_fields()
        self._started_text = _optional_rfc3339(self.started_at)
        self._ended_text = _optional_rfc3339(self.ended_at)
        self._cache_key: StateKey | None = None
        self._cache_body = b""

    def _run_bounds(self, waiting_end: float, speed: float) -> tuple[float | None, float | None]:
        """``(started_at, ended_at)``: no start when aborted, no end when never-ending."""
        outcome = self.plan.outcome
        if outcome == "aborted":
            return None, waiting_end
        if outcome is None:
            return waiting_end, None
        return waiting_end, waiting_end + self.plan.run_seconds / speed

    def cancel(self, now: float) -> bool:
        """Cancel at ``now``, as ``POST .../cancel`` does: it ends ``canceled`` with the
        log lines shown so far (a run not started yet never starts). False, and nothing
        changes, once it has ended."""
        if self.ended_at is not None and now >= self.ended_at:
            return False
        started = self.started_at
        if started is not None and now >= started:
            self._final_lines = self._logs.count_at(now - started)
        else:
            self._final_lines = 0
            self.started_at = None
        self.outcome = "canceled"
        self.ended_at = now
        self.removed_at = now + self._removal_delay
        self._started_text = _optional_rfc3339(self.started_at)
        self._ended_text = rfc3339(now)
        self._cache_key = None
        return True

    def next_fault(self) -> Fault | None:
        """Count one request and return the fault planned for it, if any."""
        index = self.requests_seen
        self.requests_seen += 1
        faults = self.plan.faults
        return faults[index] if index < len(faults) else None

    def status_at(self, now: float) -> str:
        """The status shown at ``now``."""
        if self.ended_at is not None and now >= self.ended_at:
            return str(self.outcome)
        if self.started_at is not None and now >= self.started_at:
            return "processing"
        status = "starting"
        for begins, name in self._waiting:
            if now >= begins:
                status = name
        return status

    def next_change(self, now: float) -> float | None:
        """The first moment after ``now`` when the status or the log lines change.

        ``None`` once nothing will change any more (ended, or run out of lines while
        processing forever). Data removal does not count.
        """
        if self.ended_at is not None and now >= self.ended_at:
            return None
        moments = [begins for begins, _ in self._waiting if begins > now]
        if self.started_at is not None:
            if now < self.started_at:
                moments.append(self.started_at)
            else:
                line = self._logs.next_line_after(now - self.started_at)
                if line is not None:
                    moments.append(self.started_at + line)
        if self.ended_at is not None:
            moments.append(self.ended_at)
        return min(moments, default=None)

    @property
    def has_output(self) -> bool:
        """True when the prediction shows an output once it has succeeded."""
        return self.outcome == "succeeded" and (self.plan.output is not None or bool(self.files))

    def state_key(self, now: float, base_url: str) -> StateKey:
        """Everything the answer at ``now`` depends on: status, log lines, removal, base URL."""
        status = self.status_at(now)
        if status == "processing":
            assert self.started_at is not None
            count = self._logs.count_at(now - self.started_at)
        elif self.ended_at is not None and now >= self.ended_at:
            count = 0 if self.started_at is None else ALL_LINES
            if self._final_lines is not None:
                count = self._final_lines
        else:
            count = 0
        removed = self.removed_at is not None and now >= self.removed_at
        return status, count, removed, base_url

    def snapshot(self, now: float, base_url: str) -> dict[str, Any]:
        """The prediction object as the API shows it at ``now``."""
        return self._snapshot_for(self.state_key(now, base_url))

    def body(self, now: float, base_url: str) -> bytes:
        """:meth:`snapshot` encoded as UTF-8 JSON, cached while the state is unchanged."""
        key = self.state_key(now, base_url)
        if key != self._cache_key:
            self._cache_body = _encode_json(self._snapshot_for(key))
            self._cache_key = key
        return self._cache_body

    def _snapshot_for(self, key: StateKey) -> dict[str, Any]:
        """The prediction object for a state key."""
        status, count, removed, base_url = key
        terminal = status in TERMINAL_STATUSES
        running = status == "processing" or terminal
        data = dict(self._fixed)
        data.update(
            status=status,
            logs=self._logs.text(count),
            output=self._output(base_url) if status == "succeeded" and not removed else None,
            error=self._error if status == "failed" else None,
            metrics=self._metrics(status) if terminal else {},
            started_at=self._started_text if running else None,
            completed_at=self._ended_text if terminal else None,
            data_removed=removed,
            urls=_urls(base_url, self.id),
        )
        return data

    def _fixed_fields(self) -> dict[str, Any]:
        """The fields that never change, in Replicate's order."""
        return {
            "id": self.id,
            "model": self.plan.model,
            "version": self.plan.version,
            "input": self._input,
            "logs": "",
            "output": None,
            "error": None,
            "status": "starting",
            "metrics": {},
            "urls": {},
            "created_at": rfc3339(self.created_at),
            "started_at": None,
            "completed_at": None,
            "data_removed": False,
        }

    def _metrics(self, status: str) -> dict[str, Any]:
        """Terminal metrics: ``predict_time`` when it ran, ``image_count`` for images."""
        if self.started_at is None or self.ended_at is None:
            return {}
        metrics: dict[str, Any] = {"predict_time": round(self.ended_at - self.started_at, 9)}
        images = self._image_count()
        if status == "succeeded" and images:
            metrics = {"image_count": images, **metrics}
        return metrics

    def _output(self, base_url: str) -> Any:
        """The plan's output, or URLs of the generated files on the simulator's origin."""
        if self.plan.output is not None:
            return self.plan.output
        return output_value(self.files, base_url.removesuffix("/v1"))

    def _image_count(self) -> int:
        """How many images the output holds: image URLs, or generated PNG files."""
        if self.plan.output is not None:
            return _image_count(self.plan.output)
        return sum(1 for file in self.files if file.size is None)


def _optional_rfc3339(timestamp: float | None) -> str | None:
    """:func:`rfc3339`, passing ``None`` through."""
    return None if timestamp is None else rfc3339(timestamp)


def _encode_json(data: dict[str, Any]) -> bytes:
    """UTF-8 JSON; text with lone surrogates (valid in JSON, not in UTF-8) is escaped."""
    try:
        return json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(data).encode()


def _generated_input(rng: random.Random) -> dict[str, Any]:
    """An input like the ones sent to image models."""
    return {
        "prompt": rng.choice(_PROMPTS),
        "aspect_ratio": "match_input_image",
        "output_format": "png",
    }


def _image_count(output: object) -> int:
    """How many image URLs an output holds (a URL or a list of them)."""
    items = output if isinstance(output, list) else [output]
    return sum(1 for item in items if isinstance(item, str) and item.endswith(_IMAGE_SUFFIXES))


def _urls(base_url: str, prediction_id: str) -> dict[str, str]:
    """The ``urls`` object; ``web`` points at the simulator root like replicate.com/p/ID."""
    root = base_url.removesuffix("/v1")
    return {
        "get": f"{base_url}/predictions/{prediction_id}",
        "cancel": f"{base_url}/predictions/{prediction_id}/cancel",
        "web": f"{root}/p/{prediction_id}",
    }
