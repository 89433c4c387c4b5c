"""Plans for simulated predictions: what happens to each ID, decided without any I/O.

A :class:`PredictionPlan` says how one prediction behaves (outcome, timings, logs, faults).
:func:`plan_for_id` derives a plan from the ID prefix and the :class:`SimConfig`, with
randomness seeded from ``config.seed`` and the ID so that the same ID always gets the
same plan. The JSON forms of :class:`Fault` and :class:`PredictionPlan` are what the
control API (``PUT /_sim/predictions/{id}``) accepts.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, TypeGuard, cast, get_args

from standardwebhooks.webhooks import Webhook

from tracker.simulator.files import check_file_plan
from tracker.simulator.logtext import big_log_lines, unicode_log_lines
from tracker.simulator.targets import check_events_filter, check_webhook_url

Outcome = Literal["succeeded", "failed", "canceled", "aborted"]
FaultKind = Literal["http", "html", "not_prediction", "delay", "pass"]

OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
#: the statuses after which a prediction never changes again
TERMINAL_STATUSES: frozenset[str] = OUTCOMES
#: every status Replicate documents
KNOWN_STATUSES: frozenset[str] = OUTCOMES | {"starting", "processing"}
#: what a prediction ID must look like (use ``fullmatch``)
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")

DEFAULT_MODEL = "black-forest-labs/flux-kontext-dev"
SCENARIOS: tuple[str, ...] = (
    "ok",
    "fail",
    "cancel",
    "abort",
    "gone",
    "flaky",
    "junk",
    "ratelimit",
    "weird",
    "slow",
    "unicode",
    "biglogs",
    "forever",
    "quick",
    "multi",
    "bigfile",
    "flakyfile",
    "long",
)
#: how long a ``long`` prediction runs before it succeeds (simulated seconds)
LONG_RUN_SECONDS = 3600.0
#: how many PNG images a ``multi`` prediction outputs
MULTI_IMAGES = 4
#: the file faults of a ``flakyfile`` prediction: 503, then a body cut halfway
FLAKY_FILE_FAULTS: tuple[int | str, ...] = (503, "cut")


def _require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` holds."""
    if not condition:
        raise ValueError(message)


def _is_number(value: object) -> TypeGuard[float]:
    """True for a finite int or float (``bool`` excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _non_negative(value: object, name: str) -> None:
    """Check that ``value`` is a finite number >= 0."""
    _require(_is_number(value) and value >= 0, f"{name} must be a number >= 0")


def _is_str_list(value: object) -> bool:
    """True for a list whose items are all strings."""
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


@dataclass
class SimConfig:
    """Settings of a simulator; every duration is in simulated seconds (see ``speed``)."""

    #: mean of the exponentially distributed time spent in ``starting``
    queue_seconds: float = 1.0
    #: median of the log-normal run time (``processing``)
    run_median_seconds: float = 4.0
    #: sigma of the log-normal run time
    run_sigma: float = 0.5
    #: one generated log line per interval while processing
    log_interval_seconds: float = 0.5
    #: after completion, ``data_removed`` turns true, ``output`` null, its files 404
    data_removed_after_seconds: float = 3600.0
    #: the size in bytes of the output file of a ``bigfile`` prediction
    bigfile_bytes: int = 64 * 1024 * 1024
    #: when set, requests must carry ``Authorization: Bearer <api_key>`` (else 401)
    api_key: str | None = None
    #: when set, a global token bucket; excess requests get 429 with ``Retry-After: 1``
    rate_limit_rps: float | None = None
    #: base of every random choice; per-ID randomness comes from seed + ID
    seed: int = 0
    #: probability that any API request is answered with a random 500 or 502
    fault_rate: float = 0.0
    #: time scale: 2.0 makes every duration (and delay) half as long in real time
    speed: float = 1.0
    #: Standard Webhooks secret (``whsec_...``) signing every push; without it, creating
    #: a prediction with a ``webhook`` is refused
    webhook_secret: str | None = None
    #: share of pushes never sent
    push_drop: float = 0.0
    #: share of pushes sent twice, with the same ``webhook-id``
    push_repeat: float = 0.0
    #: share of pushes (never ``completed``) held back and sent after the prediction's end
    push_late: float = 0.0
    #: a late push waits at most this long for the end (simulated seconds)
    push_late_seconds: float = 30.0
    #: each POST of a push gives up after this many real seconds (not scaled by ``speed``)
    push_timeout_seconds: float = 5.0
    #: a push that meets a connection error, a timeout, 429 or 5xx is retried this often
    push_retries: int = 2
    #: at most this many pushes are being sent at once; the others wait their turn
    push_concurrency: int = 16

    def __post_init__(self) -> None:
        """Reject settings that cannot work."""
        for name in ("queue_seconds", "run_median_seconds", "run_sigma"):
            _non_negative(getattr(self, name), name)
        for name in ("log_interval_seconds", "data_removed_after_seconds", "speed"):
            value = getattr(self, name)
            _require(_is_number(value) and value > 0, f"{name} must be a number > 0")
        rps = self.rate_limit_rps
        _require(rps is None or (_is_number(rps) and rps > 0), "rate_limit_rps must be > 0")
        rate = self.fault_rate
        _require(_is_number(rate) and 0 <= rate <= 1, "fault_rate must be between 0 and 1")
        size = self.bigfile_bytes
        _require(
            isinstance(size, int) and not isinstance(size, bool) and size >= 0,
            "bigfile_bytes must be an integer >= 0",
        )
        self._check_push_settings()

    def _check_push_settings(self) -> None:
        """Reject push settings that cannot work."""
        shares = (self.push_drop, self.push_repeat, self.push_late)
        _require(
            all(_is_number(share) and 0 <= share <= 1 for share in shares) and sum(shares) <= 1,
            "push_drop, push_repeat and push_late must be between 0 and 1, together at most 1",
        )
        _non_negative(self.push_late_seconds, "push_late_seconds")
        timeout = self.push_timeout_seconds
        _require(_is_number(timeout) and timeout > 0, "push_timeout_seconds must be > 0")
        for name, least in (("push_retries", 0), ("push_concurrency", 1)):
            value = getattr(self, name)
            valid = isinstance(value, int) and not isinstance(value, bool) and value >= least
            _require(valid, f"{name} must be an integer >= {least}")
        if self.webhook_secret is not None:
            try:
                Webhook(self.webhook_secret)
            except Exception as exc:
                raise ValueError(f"webhook_secret is not a usable secret: {exc}") from exc


@dataclass(frozen=True)
class Fault:
    """What one request for a prediction gets instead of (or before) the normal answer.

    Kinds:

    - ``http``: answer ``status`` with JSON ``{"detail": ...}``; ``retry_after`` (integer
      seconds) adds a ``Retry-After`` header.
    - ``html``: status 200 with an HTML page instead of JSON.
    - ``not_prediction``: status 200 with ``{"created": ..., "data": [{"url": ...}]}``.
    - ``delay``: wait ``seconds`` (scaled by ``speed``), then answer normally.
    - ``pass``: answer normally (to place faults at later requests).

    JSON form: ``{"kind": "http", "status": 429, "retry_after": 2}``,
    ``{"kind": "delay", "seconds": 1.5}``, ``{"kind": "html"}``; shorthands: an integer
    is an ``http`` fault with that status, a string is a kind without parameters.
    """

    kind: FaultKind
    status: int = 500
    retry_after: int | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        """Reject faults that cannot be served."""
        _require(
            isinstance(self.kind, str) and self.kind in FAULT_KINDS,
            f"fault kind must be one of {sorted(FAULT_KINDS)}",
        )
        status_ok = isinstance(self.status, int) and not isinstance(self.status, bool)
        _require(status_ok and 400 <= self.status <= 599, "fault status must be 400..599")
        retry = self.retry_after
        retry_ok = isinstance(retry, int) and not isinstance(retry, bool) and retry >= 0
        _require(retry is None or retry_ok, "fault retry_after must be an integer >= 0")
        _non_negative(self.seconds, "fault seconds")

    @classmethod
    def http(cls, status: int, retry_after: int | None = None) -> Fault:
        """An error answer with ``status`` and optionally a ``Retry-After`` header."""
        return cls("http", status=status, retry_after=retry_after)

    @classmethod
    def html(cls) -> Fault:
        """A 200 answer whose body is an HTML page."""
        return cls("html")

    @classmethod
    def not_prediction(cls) -> Fault:
        """A 200 answer whose JSON body is not a prediction object."""
        return cls("not_prediction")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """A normal answer sent after ``seconds``."""
        return cls("delay", seconds=seconds)

    @classmethod
    def passthrough(cls) -> Fault:
        """A normal answer."""
        return cls("pass")

    @classmethod
    def from_json(cls, value: object) -> Fault:
        """Parse the JSON form (object, integer or string shorthand); ``ValueError`` if bad."""
        if isinstance(value, int) and not isinstance(value, bool):
            return cls.http(value)
        if isinstance(value, str):
            return cls(cast(FaultKind, value))
        if not isinstance(value, dict):
            raise ValueError(f"a fault must be an object, an integer or a string, not {value!r}")
        unknown = set(value) - {"kind", "status", "retry_after", "seconds"}
        _require(not unknown, f"unknown fault keys: {sorted(unknown)}")
        _require("kind" in value, "a fault needs a kind")
        return cls(**value)

    def to_json(self) -> dict[str, Any]:
        """The JSON form, with only the keys that matter for this kind."""
        if self.kind == "http":
            data: dict[str, Any] = {"kind": "http", "status": self.status}
            if self.retry_after is not None:
                data["retry_after"] = self.retry_after
            return data
        if self.kind == "delay":
            return {"kind": "delay", "seconds": self.seconds}
        return {"kind": self.kind}


@dataclass
class PredictionPlan:
    """Everything about how one simulated prediction behaves.

    Timeline (simulated seconds): ``starting`` for ``queue_seconds``, then each of
    ``extra_statuses`` for ``extra_status_seconds``, then ``processing`` for
    ``run_seconds``, then ``outcome`` (``None``: processing forever). ``aborted`` goes
    straight from waiting to ``aborted`` with no ``started_at`` and no logs.
    """

    outcome: Outcome | None = "succeeded"
    queue_seconds: float = 1.0
    run_seconds: float = 4.0
    #: explicit log lines spread evenly over the run; ``None`` generates realistic ones
    log_lines: list[str] | None = None
    model: str = DEFAULT_MODEL
    #: unknown statuses shown in turn between ``starting`` and ``processing``
    extra_statuses: list[str] = field(default_factory=list)
    extra_status_seconds: float = 0.5
    #: faults for the 1st, 2nd, ... request of this ID; later requests are normal
    faults: list[Fault] = field(default_factory=list)
    #: every request gets 404 ``{"detail": "Not found."}``
    not_found: bool = False
    #: the output when succeeded; ``None`` generates URLs of files the simulator serves
    output: Any = None
    #: how many files a generated output has: 1 gives a URL, more a list of URLs
    output_files: int = 1
    #: ``None``: the generated files are small PNG images; N: binary files of N bytes
    output_bytes: int | None = None
    #: for the 1st, 2nd, ... request of each generated file: an HTTP status, ``"cut"``
    #: (the body stops halfway) or ``"pass"``; later requests are normal
    file_faults: list[int | str] = field(default_factory=list)
    #: the error when failed; ``None`` picks a realistic message
    error: str | None = None
    #: every answer is sent after this many seconds
    delay_seconds: float = 0.0
    #: the prediction's input; ``None`` generates a prompt
    input: dict[str, Any] | None = None
    version: str = "hidden"
    #: loopback URL the prediction object is POSTed to as it advances; ``None``: no pushes
    webhook: str | None = None
    #: which pushes to send (``start``, ``output``, ``logs``, ``completed``); ``None``: all
    webhook_events_filter: list[str] | None = None

    def __post_init__(self) -> None:
        """Reject plans that cannot be simulated."""
        _require(
            self.outcome is None or (isinstance(self.outcome, str) and self.outcome in OUTCOMES),
            f"outcome must be null or one of {sorted(OUTCOMES)}",
        )
        for name in ("queue_seconds", "run_seconds", "extra_status_seconds", "delay_seconds"):
            _non_negative(getattr(self, name), name)
        _require(self.log_lines is None or _is_str_list(self.log_lines), "bad log_lines")
        _require(
            _is_str_list(self.extra_statuses)
            and all(s and s not in KNOWN_STATUSES for s in self.extra_statuses),
            "extra_statuses must be a list of non-empty statuses other than the known ones",
        )
        _require(
            isinstance(self.faults, list) and all(isinstance(f, Fault) for f in self.faults),
            "faults must be a list of Fault",
        )
        _require(isinstance(self.not_found, bool), "not_found must be a boolean")
        _require(isinstance(self.model, str) and bool(self.model), "model must be a string")
        _require(isinstance(self.version, str), "version must be a string")
        _require(self.error is None or isinstance(self.error, str), "error must be a string")
        _require(self.input is None or isinstance(self.input, dict), "input must be an object")
        check_file_plan(self.output_files, self.output_bytes, self.file_faults)
        if self.webhook is not None:
            check_webhook_url(self.webhook)
        if self.webhook_events_filter is not None:
            check_events_filter(self.webhook_events_filter)

    @classmethod
    def from_json(cls, data: object) -> PredictionPlan:
        """Parse the JSON form (an object of the fields, all optional); ``ValueError`` if bad."""
        if not isinstance(data, Mapping):
            raise ValueError("a plan must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        _require(not unknown, f"unknown plan keys: {sorted(unknown)}")
        values = dict(data)
        if "faults" in values:
            faults = values["faults"]
            _require(isinstance(faults, list), "faults must be a list")
            values["faults"] = [Fault.from_json(item) for item in faults]
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The JSON form accepted by :meth:`from_json` and the control API."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["faults"] = [fault.to_json() for fault in self.faults]
        return data


def id_rng(seed: int, prediction_id: str, purpose: str) -> random.Random:
    """A random generator that depends only on the seed, the ID and the purpose."""
    digest = hashlib.blake2b(f"{seed}\0{prediction_id}\0{purpose}".encode(), digest_size=8)
    return random.Random(int.from_bytes(digest.digest(), "big"))


def scenario_of(prediction_id: str) -> str:
    """The scenario an ID selects: its prefix before the first ``-``, else ``ok``."""
    prefix = prediction_id.split("-", 1)[0].lower()
    return prefix if prefix in SCENARIOS else "ok"


def sample_queue_seconds(rng: random.Random, config: SimConfig) -> float:
    """Time in ``starting``: exponential with mean ``config.queue_seconds``."""
    mean = config.queue_seconds
    return rng.expovariate(1.0 / mean) if mean > 0 else 0.0


def sample_run_seconds(rng: random.Random, config: SimConfig) -> float:
    """Time in ``processing``: log-normal around ``config.run_median_seconds``."""
    median = config.run_median_seconds
    return rng.lognormvariate(math.log(median), config.run_sigma) if median > 0 else 0.0


def scenario_of_model(model: str | None) -> str | None:
    """The scenario a created prediction's model names: ``acme/long`` is ``long`` (the
    name after the last ``/``, case-insensitively); None for any other name."""
    name = (model or "").rsplit("/", 1)[-1].lower()
    return name if name in SCENARIOS else None


def plan_for_id(
    prediction_id: str, config: SimConfig, scenario: str | None = None
) -> PredictionPlan:
    """The plan an ID gets when nobody defined one: config timings plus its scenario
    (``scenario``, else the one its prefix names)."""
    rng = id_rng(config.seed, prediction_id, "plan")
    base = PredictionPlan(
        queue_seconds=sample_queue_seconds(rng, config),
        run_seconds=sample_run_seconds(rng, config),
    )
    overrides = _scenario_overrides(scenario or scenario_of(prediction_id), rng, base, config)
    return replace(base, **overrides) if overrides else base


def _scenario_overrides(
    scenario: str, rng: random.Random, base: PredictionPlan, config: SimConfig
) -> dict[str, Any]:
    """The plan fields a scenario changes (fresh objects each call)."""
    match scenario:
        case "fail":
            return {"outcome": "failed"}
        case "cancel":
            return {"outcome": "canceled"}
        case "abort":
            return {"outcome": "aborted"}
        case "gone":
            return {"not_found": True}
        case "flaky":
            return {"faults": [Fault.http(500), Fault.http(502), Fault.http(503)]}
        case "junk":
            return {"faults": [Fault.html(), Fault.not_prediction()]}
        case "ratelimit":
            return {"faults": [Fault.http(429, retry_after=2)]}
        case "weird":
            return {"extra_statuses": ["queued_elsewhere"]}
        case "slow":
            return {"delay_seconds": 1.5}
        case "unicode":
            count = max(8, math.ceil(base.run_seconds / config.log_interval_seconds))
            return {"log_lines": unicode_log_lines(rng, count)}
        case "biglogs":
            return {"log_lines": big_log_lines(rng)}
        case "forever":
            return {"outcome": None}
        case "quick":
            return {"queue_seconds": 0.2, "run_seconds": 0.5}
        case "multi":
            return {"output_files": MULTI_IMAGES}
        case "bigfile":
            return {"output_bytes": config.bigfile_bytes}
        case "flakyfile":
            return {"file_faults": list(FLAKY_FILE_FAULTS)}
        case "long":
            return {"run_seconds": LONG_RUN_SECONDS}
        case _:
            return {}
