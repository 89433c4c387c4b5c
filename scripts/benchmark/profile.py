"""The sizes and durations of a run of the main benchmark: FULL, or FAST (``--fast``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

SECTIONS = ("efficiency", "ample", "tight", "scale")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    median: float  #: seconds, median of the log-normal run time


FULL_MODELS = (
    ModelSpec("bench/image-fast", 8.0),
    ModelSpec("bench/image-sdxl", 20.0),
    ModelSpec("bench/video-short", 60.0),
)
FAST_MODELS = (
    ModelSpec("bench/image-fast", 0.6),
    ModelSpec("bench/image-sdxl", 1.0),
    ModelSpec("bench/video-short", 1.6),
)


@dataclass(frozen=True)
class Profile:
    """Every size and duration of a run; ``--fast`` picks the small one."""

    models: tuple[ModelSpec, ...]
    sigma: float
    queue_mean: float
    poll_min: float
    poll_max: float
    arrival_seconds: float
    ample_running: float  #: predictions running at once (Little's law: rate x mean time)
    ample_rps: float
    tight_running: float
    tight_rps: float
    efficiency_predictions: int
    efficiency_warmup: float
    efficiency_seconds: float
    scale_registered: int
    scale_active: int
    scale_chunks: int  #: log pieces per finished prediction (one per poll that saw new lines)
    scale_history_median: float  #: run time (s) of the scale database's finished predictions
    scale_max_rps: float
    scale_seconds: float
    scale_backoff_seconds: float
    drain_slack: float  #: seconds to wait for stragglers after the last planned completion


FULL = Profile(
    models=FULL_MODELS,
    sigma=0.5,
    queue_mean=1.0,
    poll_min=1.0,
    poll_max=30.0,
    arrival_seconds=60.0,
    ample_running=60,
    ample_rps=200,
    tight_running=300,
    tight_rps=40,
    efficiency_predictions=2000,
    efficiency_warmup=4.0,
    efficiency_seconds=12.0,
    scale_registered=100_000,
    scale_active=10_000,
    scale_chunks=20,
    scale_history_median=600.0,
    scale_max_rps=5000,
    scale_seconds=50.0,
    scale_backoff_seconds=25.0,
    drain_slack=90.0,
)
FAST = Profile(
    models=FAST_MODELS,
    sigma=0.3,
    queue_mean=0.2,
    poll_min=0.25,
    poll_max=1.0,
    arrival_seconds=1.0,
    ample_running=12,
    ample_rps=200,
    tight_running=24,
    tight_rps=10,
    efficiency_predictions=200,
    efficiency_warmup=0.5,
    efficiency_seconds=1.5,
    scale_registered=1_000,
    scale_active=100,
    scale_chunks=20,
    scale_history_median=600.0,
    scale_max_rps=5000,
    scale_seconds=2.0,
    scale_backoff_seconds=0.0,
    drain_slack=15.0,
)


def mean_duration(profile: Profile) -> float:
    """Seconds from creation to completion of an average prediction."""
    mean_run = sum(m.median for m in profile.models) / len(profile.models)
    return profile.queue_mean + mean_run * math.exp(profile.sigma**2 / 2)
