"""Upstream simulator: a Replicate-compatible prediction API on loopback.

The simulator is a real HTTP server that answers ``GET {base}/predictions/{id}`` the way
Replicate does, so that the tracker can be tried, tested and benchmarked without an API
key. Every ID is known: a prediction comes to life the first time it is asked for (or
defined), and the prefix of its ID picks its behaviour.

Running it
==========

From the command line (stops on Ctrl-C or SIGTERM)::

    tracker simulate --port 8765
    # simulator listening on http://127.0.0.1:8765/v1
    curl http://127.0.0.1:8765/v1/predictions/ok-1

From Python, on the running event loop or in a background thread::

    sim = Simulator(SimConfig(speed=10))
    base_url = await sim.start()          # http://127.0.0.1:PORT/v1
    ...
    await sim.stop()

    with SimulatorThread(SimConfig(seed=7)) as sim:
        sim.define("my-id", PredictionPlan(outcome="failed", run_seconds=0.2))
        ...
        sim.request_count("my-id")
        sim.file_request_count("my-id")   # downloads of its output files

Scenarios by ID prefix
======================

An ID matches ``^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`` (others get 404). Its prefix is the
text before the first ``-`` (the whole ID when there is none), compared case-insensitively:

=============  ===========================================================================
``ok``         succeeds with the configured timings (also any unrecognised prefix)
``fail``       fails with an error message (``error`` set, a traceback in the logs)
``cancel``     canceled while processing
``abort``      ``starting`` then ``aborted``: never processing, no ``started_at``, no logs
``gone``       always 404 ``{"detail": "Not found."}``
``flaky``      1st, 2nd, 3rd requests answer 500, 502, 503 (no Retry-After), then normal
``junk``       1st request: an HTML page with status 200; 2nd: the JSON body
               ``{"created": ..., "data": [{"url": ...}]}`` (not a prediction); then normal
``ratelimit``  1st request: 429 with ``Retry-After: 2``; then normal
``weird``      shows the unknown status ``queued_elsewhere`` between starting and
               processing, then succeeds
``slow``       every answer is sent 1.5 s late
``unicode``    logs full of emoji, CJK, accented and astral characters
``biglogs``    logs grow to more than 1.2 MB (lines of 2-4 KB) by completion
``forever``    never finishes: processing forever, with ever-growing logs
``quick``      queue 0.2 s, run 0.5 s, then succeeds
``multi``      succeeds with a list of 4 PNG image URLs
``bigfile``    succeeds with the URL of one binary file of ``bigfile_bytes`` (64 MiB)
``flakyfile``  its output file answers 503, then is cut off halfway, then is served
``long``       runs an hour (``LONG_RUN_SECONDS``), then succeeds: one to cancel
=============  ===========================================================================

Examples: ``fail-42``, ``biglogs-a``, ``quick-run_7``.

A prediction created through the API (``POST /v1/predictions`` or
``/v1/models/{owner}/{name}/predictions``, as the official ``replicate`` client does)
gets a random ID; the model's name picks its scenario instead (``acme/long``,
``acme/forever``, ``acme/fail``; any other name: ``ok``).

Cancelling
==========

``POST {base}/predictions/{id}/cancel`` ends a prediction that has not ended yet:
``canceled`` at once, ``completed_at`` set, the log lines shown so far kept (one still
``starting`` never gets ``started_at``), a push sent to its webhook; the answer is the
prediction object, as Replicate's. A prediction that has ended is answered unchanged.
Auth, the rate limit and ``fault_rate`` apply as to every request; plan faults do not.

Lifecycle
=========

A prediction is ``starting`` for its queue time (exponential, mean ``queue_seconds``),
shows each extra status, is ``processing`` for its run time (log-normal around
``run_median_seconds`` with ``run_sigma``) and then ends. ``created_at`` is the moment it
was first seen; timestamps are RFC 3339 UTC with microseconds and ``Z``.

- ``logs`` is cumulative: ``""`` before processing, then one line per
  ``log_interval_seconds`` (``Using seed: N``, ``step 3/8 |  37% | 2.00 it/s``...), and
  final lines at the end; every answer extends the previous one.
- ``output`` is null until ``succeeded``, then the URL of a file the simulator serves
  (a list of them for several files; see Output files) unless the plan sets its own;
  ``error`` is a string only when ``failed``.
- ``metrics`` is ``{}`` until the end, then ``predict_time`` (completed - started) and,
  for image outputs, ``image_count``; aborted predictions have none.
- ``data_removed_after_seconds`` after the end, ``data_removed`` turns true,
  ``output`` null, and the output files answer 404.
- ``speed`` divides every duration, including delays (``speed=10``: a 4 s run takes
  0.4 s); ``Retry-After`` headers are not scaled.
- Randomness comes from ``seed`` and the ID: the same ID always gets the same plan.

The whole API (``/v1``) may require ``Authorization: Bearer <api_key>`` (else 401
``{"detail": "Unauthenticated"}``), may be rate limited (a global token bucket of
``rate_limit_rps``; else 429 with ``Retry-After: 1`` and ``{"detail": "Request was
throttled."}``) and may fail at random (``fault_rate``: 500 or 502). None of this
applies to the output files.

Output files
============

A generated output points at files on the simulator's own origin, outside ``/v1``:
``http://127.0.0.1:PORT/files/{id}/{index}/output.png``, one URL per file (a string for
one, a list for ``output_files`` > 1). By default each is a small PNG image (96x64, a few
hundred bytes, colours drawn from seed, ID and index; ``image/png``). With
``output_bytes`` = N the files are ``output.bin`` of exactly N bytes
(``application/octet-stream``), streamed in 64 KiB chunks, never held in memory; their
content is deterministic, so a test knows what to expect::

    from tracker.simulator import expected_sha256, file_bytes, png_image
    sim.define("big-1", PredictionPlan(output_bytes=50_000_000))
    expected_sha256("big-1", 50_000_000, seed=config.seed)   # index=0
    sim.file_requests("big-1")   # [FileRequest(at, prediction_id, index, status_code, cut)]

A file is served (200 with ``Content-Length``; ``HEAD`` too) only while the prediction
shows it: from ``succeeded`` until ``data_removed`` (the same moment); before, after, for
any other outcome, an explicit ``output`` or an unknown path: 404, as Replicate's file
delivery answers once outputs are deleted. Files need no API key, are not throttled and
not faulted by ``fault_rate``; ``request_count`` counts API requests only.
``file_faults`` (``[503, "cut"]`` for ``flakyfile``) apply to the 1st, 2nd, ... request
of each file: an HTTP status, or ``"cut"``: 200 with the full ``Content-Length``, then
the connection closes after half the body. Details: :mod:`tracker.simulator.files`.

HTTP routes
===========

- ``GET /v1/predictions/{id}``: the prediction object.
- ``POST /v1/predictions`` with ``{"version": ... | "model": ..., "input": {...}}``
  and optionally ``"webhook"`` and ``"webhook_events_filter"`` (see Webhook pushes):
  creates a prediction with a fresh ID and the configured timings; 201 and the object
  (status ``starting``); 422 when malformed. ``POST /v1/models/{owner}/{name}/predictions``
  does the same for the model named by the path.
- ``PUT /_sim/predictions/{id}`` with a plan (below): defines or redefines a prediction;
  its clock and fault count restart. 400 when the plan is malformed.
- ``GET /_sim/requests[?id=ID]``: ``{"count": N, "requests": [{"at": epoch seconds,
  "prediction_id": ..., "status_code": ...}, ...]}``, every ``/v1`` request answered.
- ``GET /files/{id}/{index}/{name}``: an output file (see Output files).
- ``GET /_sim/files[?id=ID]``: ``{"count": N, "requests": [{"at", "prediction_id",
  "index", "status_code", "cut"}, ...]}``, every output file request answered.
- ``GET /_sim/pushes[?id=ID]``: ``{"count": N, "pushes": [{"prediction_id", "event",
  "webhook_id", "fate", "status", "due_at", "attempts": [{"at", "status_code",
  "error"}, ...]}, ...]}``, every webhook push so far, in the order they were due.
- ``GET /_sim/health``: ``{"status": "ok", "predictions": N, "requests": N}``.

The control routes need no API key and are never throttled or faulted.

Plan JSON
=========

Every key is optional (defaults shown); unknown keys are refused::

    {
      "outcome": "succeeded",          // "failed" | "canceled" | "aborted" | null (never ends)
      "queue_seconds": 1.0,            // time in "starting"
      "run_seconds": 4.0,              // time in "processing"
      "log_lines": null,               // explicit lines spread over the run; null: generated
      "model": "black-forest-labs/flux-kontext-dev",
      "extra_statuses": [],            // e.g. ["queued_elsewhere"], after "starting"
      "extra_status_seconds": 0.5,     // how long each extra status is shown
      "faults": [],                    // for the 1st, 2nd, ... request of this ID
      "not_found": false,              // always 404
      "output": null,                  // null: URLs of generated files (Output files)
      "output_files": 1,               // how many generated files; > 1: a list of URLs
      "output_bytes": null,            // null: PNG images; N: binary files of N bytes
      "file_faults": [],               // for the 1st, 2nd, ... request of each file:
                                       // a status (503), "cut" or "pass"
      "error": null,                   // null: a generated message (when failed)
      "delay_seconds": 0.0,            // every answer is this late
      "input": null,                   // null: a generated prompt
      "version": "hidden",
      "webhook": null,                 // a loopback URL: push the prediction there
      "webhook_events_filter": null    // e.g. ["completed"]; null: all four events
    }

A fault is one of::

    {"kind": "http", "status": 500}                    // error status, JSON {"detail": ...}
    {"kind": "http", "status": 429, "retry_after": 2}  // with a Retry-After header
    {"kind": "html"}                                   // 200 with an HTML page
    {"kind": "not_prediction"}                         // 200 with {"created", "data"} JSON
    {"kind": "delay", "seconds": 1.5}                  // a normal answer, that late
    {"kind": "pass"}                                   // a normal answer

or a shorthand: ``503`` for ``{"kind": "http", "status": 503}``, ``"html"`` for
``{"kind": "html"}``. Example: ``"faults": ["pass", 500, {"kind": "delay", "seconds": 2}]``
answers the 1st request normally, the 2nd with a 500 and the 3rd two seconds late.

Webhook pushes
==============

A prediction created with a ``webhook`` (or defined with one) has its object POSTed
there as it advances, as Replicate does: ``start`` when it starts processing, ``logs``
as lines appear (at most one push per 0.5 s / ``speed``), ``output`` when it succeeds,
``completed`` once at the end; ``webhook_events_filter`` picks among them (default: all).
Each push is signed per Standard Webhooks with ``webhook_secret`` (required) under a
fresh ``webhook-id``, which its retries keep. The URL must be on loopback
(127.0.0.0/8, ``::1``, ``localhost``; else 422): the simulator never sends traffic off
the machine. ``push_drop``, ``push_repeat`` and ``push_late`` make a share of pushes
vanish, arrive twice or arrive after ``completed``, reproducibly under ``seed``::

    sim = Simulator(SimConfig(webhook_secret="whsec_...", push_drop=0.3, seed=1))
    base_url = await sim.start()
    # POST {base_url}/predictions
    #   {"version": "v", "input": {}, "webhook": "http://127.0.0.1:9000/hook"}
    sim.pushes()   # [PushRecord(event="start", fate="sent", attempts=[...]), ...]

The details (throttling, retries, timeouts, the fault rules) are in
:mod:`tracker.simulator.push`.
"""

from tracker.simulator.files import FileRequest, expected_sha256, file_bytes, png_image
from tracker.simulator.lifecycle import SimulatedPrediction
from tracker.simulator.push import PushAttempt, PushRecord
from tracker.simulator.scenarios import (
    ID_PATTERN,
    SCENARIOS,
    TERMINAL_STATUSES,
    Fault,
    Outcome,
    PredictionPlan,
    SimConfig,
    plan_for_id,
    scenario_of,
)
from tracker.simulator.server import RequestRecord, Simulator
from tracker.simulator.targets import WEBHOOK_EVENTS
from tracker.simulator.thread import SimulatorThread

__all__ = [
    "ID_PATTERN",
    "SCENARIOS",
    "TERMINAL_STATUSES",
    "WEBHOOK_EVENTS",
    "Fault",
    "FileRequest",
    "Outcome",
    "PredictionPlan",
    "PushAttempt",
    "PushRecord",
    "RequestRecord",
    "SimConfig",
    "SimulatedPrediction",
    "Simulator",
    "SimulatorThread",
    "expected_sha256",
    "file_bytes",
    "plan_for_id",
    "png_image",
    "scenario_of",
]
