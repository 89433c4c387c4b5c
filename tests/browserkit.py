"""Helpers of the real-browser tests (tests/browser/) and of the dashboard's screenshots:
Debian's Chromium driven by Playwright for Python, and the databases they look at.

The browser: ``/usr/bin/chromium`` from the Debian package ``chromium`` (scripts/test
installs it when it is missing and it can), launched headless by Playwright's async
API with ``executable_path``; Playwright's own browser download is never used. Without
it the browser tests skip, and fail under ``CI=true`` (``require_browser``).

``Watch`` follows everything a browser context does that a test must never see: a
dialog, a script error, a Content-Security-Policy violation (reported by the page's
``securitypolicyviolation`` events and by the console), ``window.__pwned`` set by any
document or frame (a setter trap installed before any page script runs), and every URL
requested (none may carry the token).

Seeds, written through the store as the daemon writes (``answer``):

- ``seed_hostile``: predictions in every state whose upstream text is hostile (markup,
  attribute breakers, ``javascript:`` URLs, control characters; each would set
  ``window.__pwned`` if it ever ran), a dead delivery with its attempts, and a real PNG
  in a local archive;
- ``seed_demo``: a plausible day of predictions on a few models, for the screenshots.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import random
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, update

from tests.integration.test_dashboard_seed import answer
from tests.serving import TOKEN
from tests.showcase import iso
from tracker.archive.storage import artifact_key
from tracker.domain import CallbackSpec
from tracker.store.store import Store
from tracker.store.tables import deliveries, delivery_attempts

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright

#: Debian's Chromium (package ``chromium``); Playwright drives it, never its own download
CHROMIUM = Path("/usr/bin/chromium")
#: flags for a container: /dev/shm is small, and there is no GPU
CHROMIUM_ARGS = ("--disable-dev-shm-usage", "--disable-gpu")
#: how long an ``expect(...)`` waits (ms): generous, the machine is shared
EXPECT_MS = 20_000

# -- hostile upstream text ---------------------------------------------------------------

#: the width of an image once it has loaded (0 if it cannot be decoded): visible is not
#: yet loaded, so reading ``complete`` at once races the image's own request
LOADED_WIDTH = "img => img.decode().then(() => img.naturalWidth, () => 0)"
PWNED = "window.__pwned=1"
SCRIPT = f"<script>{PWNED}</script>"
ATTRIBUTE = f'"><img src=x onerror="{PWNED}">'
JAVASCRIPT_URL = f"javascript:{PWNED}"
MARKUP = (
    f'<x-pwned>markup</x-pwned><a href="{JAVASCRIPT_URL}">click</a><svg onload="{PWNED}"></svg>'
    "<img src=y onerror=alert(document.domain)>"
    f'<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe><style>*{{color:red}}</style>'
)
CONTROL = "\x1b[31mred\x1b[0m\x07\x08\u202eevil\u200b"
#: every hostile string, as stored: none may reach a page as markup
HOSTILE = (SCRIPT, ATTRIBUTE, JAVASCRIPT_URL, MARKUP, CONTROL)
HOSTILE_MODEL = f"acme/{SCRIPT}"
HOOK = "https://user:hook-password@hooks.example/in?token=hook-secret"


# -- the browser -------------------------------------------------------------------------


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed: run scripts/setup"
    if not os.access(CHROMIUM, os.X_OK):
        return (
            f"{CHROMIUM} is missing: scripts/test installs Debian's chromium when it runs as"
            " root with apt-get; else run 'apt-get install -y chromium'"
        )
    return None


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


async def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless."""
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
    )


#: installed in every document before its own scripts: reports CSP violations and any
#: write of window.__pwned (in any frame: parent.__pwned too) to the test
_TRAPS = """
(() => {
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__trackerReport("violation", `${e.violatedDirective} ${e.blockedURI} ` +
      `${e.sourceFile}:${e.lineNumber}`);
  });
  Object.defineProperty(window, "__pwned", {
    configurable: false,
    get() { return undefined; },
    set(value) { window.__trackerReport("pwned", `${location.href} set __pwned=${value}`); },
  });
})();
"""


@dataclass
class Watch:
    """What one browser context did that a test looks at afterwards."""

    urls: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    pwned: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def attach(self, context: BrowserContext) -> None:
        await context.expose_binding("__trackerReport", self._report)
        await context.add_init_script(script=_TRAPS)
        context.on("request", lambda request: self.urls.append(request.url))
        context.on("page", self._watch_page)

    def _report(self, source: Any, kind: str, text: str) -> None:
        (self.violations if kind == "violation" else self.pwned).append(text)

    def _watch_page(self, page: Page) -> None:
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

        async def dismiss(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        page.on("dialog", dismiss)

    def csp_messages(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m]

    def assert_clean(self) -> None:
        """No dialog, no script error, no CSP violation, nothing pwned, no token in a URL."""
        assert not self.dialogs, f"a dialog opened: {self.dialogs}"
        assert not self.pwned, f"hostile text ran: {self.pwned}"
        assert not self.errors, f"script errors: {self.errors}"
        assert not self.violations, f"CSP violations: {self.violations}"
        assert not self.csp_messages(), f"CSP messages in the console: {self.csp_messages()}"
        leaked = [url for url in self.urls if TOKEN in url or "token=" in url]
        assert not leaked, f"a URL carries the token: {leaked}"


async def new_page(
    browser: Browser, base_url: str, **options: Any
) -> tuple[BrowserContext, Page, Watch]:
    """A new context (``options``: viewport, color_scheme, bypass_csp...) with a
    ``Watch`` on it, and a page in it; the caller closes the context."""
    options.setdefault("viewport", {"width": 1280, "height": 800})
    context = await browser.new_context(base_url=base_url, **options)
    watch = Watch()
    await watch.attach(context)
    page = await context.new_page()
    return context, page, watch


async def log_in(page: Page, path: str = "/", token: str = TOKEN) -> None:
    """Open ``path``, get sent to the login form, log in through it, and land on ``path``."""
    from playwright.async_api import expect

    await page.goto(path)
    await expect(page).to_have_url(_url_re(r"/login\?next="), timeout=EXPECT_MS)
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).not_to_have_url(_url_re(r"/login"), timeout=EXPECT_MS)


def _url_re(pattern: str) -> Any:
    import re

    return re.compile(pattern)


#: problems the DOM would show if upstream text had become markup: a script that is not
#: ours, an event handler attribute, a javascript: URL, an element only upstream text
#: could have brought (iframe, object, embed, style, MARKUP's x-pwned), an image from
#: anywhere but the archive
DOM_PROBLEMS = """
() => {
  const problems = [];
  for (const el of document.querySelectorAll("*")) {
    for (const attr of el.attributes) {
      if (attr.name.toLowerCase().startsWith("on")) problems.push(`${el.tagName} ${attr.name}`);
      if (/^\\s*javascript:/i.test(attr.value))
        problems.push(`${el.tagName} ${attr.name}=${attr.value}`);
    }
  }
  for (const s of document.scripts) {
    const url = s.src ? new URL(s.src) : null;
    if (!url || url.origin !== location.origin || !url.pathname.startsWith("/static/"))
      problems.push(`script ${s.src || s.textContent.slice(0, 40)}`);
  }
  for (const el of document.querySelectorAll("iframe, object, embed, body style, x-pwned"))
    problems.push(`element ${el.tagName}`);
  for (const img of document.images) {
    const url = new URL(img.src, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/files/"))
      problems.push(`img ${img.src}`);
  }
  return problems;
}
"""


# -- images ------------------------------------------------------------------------------


def png(width: int, height: int, pixel: Callable[[int, int], tuple[int, int, int]]) -> bytes:
    """A real RGB PNG file drawn by ``pixel(x, y)``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG file."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def artwork(seed: int, size: int = 192) -> bytes:
    """A small picture (a sun over hills, colours from ``seed``) as an output image."""
    rng = random.Random(seed)
    sky = [rng.randrange(40, 256) for _ in range(3)]
    ground = [rng.randrange(0, 140) for _ in range(3)]
    sun_x, sun_y = size * rng.uniform(0.2, 0.8), size * rng.uniform(0.15, 0.45)
    radius, phase = size * rng.uniform(0.07, 0.15), rng.uniform(0, 2 * math.pi)
    amplitude = size * rng.uniform(0.04, 0.12)

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        hill = size * 0.62 + amplitude * math.sin(x / size * 8 + phase)
        if y > hill:
            shade = 1 - (y - hill) / size
            return (int(ground[0] * shade), int(ground[1] * shade), int(ground[2] * shade))
        if (x - sun_x) ** 2 + (y - sun_y) ** 2 < radius**2:
            return (255, 236, 160)
        t = y / hill
        return (
            int(sky[0] * (1 - t) + 230 * t),
            int(sky[1] * (1 - t) + 180 * t),
            int(sky[2] * (1 - t) + 120 * t),
        )

    return png(size, size, pixel)


def store_files(
    store: Store,
    archive: Path,
    pid: str,
    files: dict[int, bytes],
    *,
    now: datetime,
    failed: str | None = None,
) -> None:
    """Archive the output files of ``pid`` the daemon queued: positions in ``files`` are
    written into the archive folder and recorded as stored, the others fail (``failed``)."""
    jobs = store.claim_artifacts(
        now=now,
        limit=100,
        owner="seed",
        lease_until=now + timedelta(minutes=5),
        prediction_ids=[pid],
    )
    for job in sorted(jobs, key=lambda j: j.position):
        body = files.get(job.position)
        if body is None:
            error = failed or "HTTP 404"
            store.artifact_not_stored(job, owner="seed", error=error, next_attempt_at=None)
            continue
        key = artifact_key(pid, job.position, job.source_url)
        path = archive.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        store.artifact_stored(
            job,
            owner="seed",
            now=now,
            stored_url=path.as_uri(),
            size=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
            content_type="image/png",
        )


def set_delivery(
    store: Store,
    pid: str,
    *,
    state: str,
    attempts: Sequence[tuple[datetime, int | None, str | None]],
    delivered_at: datetime | None = None,
) -> int:
    """Give the delivery of ``pid`` its end: ``state`` after ``attempts`` (when, HTTP
    status, error); returns its ID."""
    last_code, last_error = (attempts[-1][1], attempts[-1][2]) if attempts else (None, None)
    with store.engine.begin() as conn:
        delivery_id = conn.execute(
            update(deliveries)
            .where(deliveries.c.prediction_id == pid)
            .values(
                state=state,
                attempts=len(attempts),
                last_status_code=last_code,
                last_error=last_error,
                next_attempt_at=None,
                delivered_at=delivered_at,
            )
            .returning(deliveries.c.id)
        ).scalar_one()
        for when, code, error in attempts:
            conn.execute(
                insert(delivery_attempts).values(
                    delivery_id=delivery_id,
                    attempted_at=when,
                    status_code=code,
                    error=error,
                    duration_ms=40 + len(error or "") % 50,
                )
            )
    return int(delivery_id)


# -- the hostile seed --------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    running: str  #: processing, hostile logs ending with a progress bar at 45 %
    succeeded: str  #: outputs: a javascript: URL, an archived PNG, a file that failed
    failed: str  #: hostile error, a dead webhook delivery with attempts
    unseen: str  #: registered, never polled
    dead_delivery: int

    @property
    def ids(self) -> tuple[str, str, str, str]:
        return (self.running, self.succeeded, self.failed, self.unseen)


HOSTILE_LOGS = f"loading {SCRIPT}\n{ATTRIBUTE}\n{MARKUP}\n{CONTROL}\n"
PROGRESS_45 = " 45%|████▌     | 9/20 [00:04<00:05,  2.10it/s]"
IMAGE = artwork(7, 64)


def _hostile_body(t0: datetime) -> dict[str, object]:
    return {
        "model": HOSTILE_MODEL,
        "version": ATTRIBUTE,
        "created_at": iso(t0),
        "input": {"prompt": SCRIPT, "image": JAVASCRIPT_URL, "note": MARKUP, CONTROL: CONTROL},
        "urls": {"web": JAVASCRIPT_URL, "get": "https://api.example/p"},
    }


def seed_hostile(store: Store, archive: Path, now: datetime | None = None) -> Hostile:
    now = now or datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(minutes=30)
    ids = Hostile("run-1", "ok-1", "bad-1", "new-1", 0)
    hook = CallbackSpec("webhook", HOOK, ("completed",))
    store.add_predictions(
        [ids.running, ids.succeeded, ids.failed],
        now=t0,
        first_poll_at=t0,
        labels={"team": SCRIPT, "note": MARKUP, "ctl": CONTROL},
        callbacks_to_add=[hook],
    )
    store.add_predictions([ids.unseen], now=t0 + timedelta(seconds=1), first_poll_at=now)
    body = _hostile_body(t0)
    answer(store, ids.running, t0 + timedelta(seconds=1), status="starting", **body)
    answer(
        store,
        ids.running,
        t0 + timedelta(seconds=8),
        status="processing",
        started_at=iso(t0 + timedelta(seconds=3)),
        logs=HOSTILE_LOGS + " 10%|█         | 2/20 [00:01<00:09,  1.90it/s]\r" + PROGRESS_45,
        **body,
    )
    answer(
        store,
        ids.succeeded,
        t0 + timedelta(seconds=20),
        status="succeeded",
        started_at=iso(t0 + timedelta(seconds=2)),
        completed_at=iso(t0 + timedelta(seconds=19)),
        output=[
            JAVASCRIPT_URL,
            "https://files.example/out/0.png?sig=file-secret",
            "https://files.example/out/1.png?x=" + ATTRIBUTE.replace(" ", "/"),
            {"caption": MARKUP, "link": JAVASCRIPT_URL},
        ],
        metrics={"predict_time": 17.0, SCRIPT: ATTRIBUTE},
        logs=HOSTILE_LOGS,
        **body,
    )
    store_files(
        store,
        archive,
        ids.succeeded,
        {0: IMAGE},
        now=t0 + timedelta(seconds=21),
        failed=f"HTTP 404 {SCRIPT}",
    )
    answer(
        store,
        ids.failed,
        t0 + timedelta(seconds=40),
        status="failed",
        started_at=iso(t0 + timedelta(seconds=5)),
        completed_at=iso(t0 + timedelta(seconds=39)),
        error=f"{SCRIPT} {ATTRIBUTE} {MARKUP} {CONTROL}",
        logs=HOSTILE_LOGS,
        **body,
    )
    dead = set_delivery(
        store,
        ids.failed,
        state="dead",
        attempts=[
            (t0 + timedelta(seconds=41 + n), 500, f"HTTP 500: {ATTRIBUTE} {MARKUP}")
            for n in range(3)
        ],
    )
    return Hostile(ids.running, ids.succeeded, ids.failed, ids.unseen, dead)


# -- the demo seed (screenshots) ---------------------------------------------------------

#: model -> median run seconds
DEMO_MODELS = {
    "black-forest-labs/flux-schnell": 2.2,
    "stability-ai/sdxl": 9.0,
    "meta/meta-llama-3-8b-instruct": 4.5,
    "nightmareai/real-esrgan": 6.5,
    "openai/whisper": 31.0,
}
DEMO_SHOWN = "q8t2k7a5v1rgm0cj9e3xw4hbnd"
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


@dataclass(frozen=True)
class Demo:
    shown: str  #: the prediction of the screenshot: four archived images
    dead_delivery: int


def seed_demo(store: Store, archive: Path, now: datetime | None = None) -> Demo:
    """A day of finished predictions on five models (about one in ten failed, a few
    canceled), the prediction of the screenshot, one dead delivery."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(16)
    starts = sorted(now - timedelta(hours=23.5 * rng.random() ** 0.8) for _ in range(100))
    dead_pid = ""
    for n, created in enumerate(starts):
        pid = "".join(rng.choice(_ALPHABET) for _ in range(26))
        model = rng.choice(list(DEMO_MODELS))
        roll = rng.random()
        final = "failed" if roll < 0.09 else "canceled" if roll < 0.13 else "succeeded"
        hook = n % 9 == 0
        callbacks = [CallbackSpec("webhook", "https://hooks.example.com/replicate", ("completed",))]
        store.add_predictions(
            [pid],
            now=created,
            first_poll_at=created,
            labels={"team": rng.choice(["search", "studio", "support"])},
            callbacks_to_add=callbacks if hook else (),
        )
        queued = rng.expovariate(1 / 1.5)
        ran = DEMO_MODELS[model] * rng.lognormvariate(0, 0.45)
        started = created + timedelta(seconds=queued)
        completed = started + timedelta(seconds=ran)
        answer(
            store,
            pid,
            completed + timedelta(seconds=0.4),
            status=final,
            model=model,
            version="5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
            created_at=iso(created),
            started_at=iso(started),
            completed_at=iso(completed),
            output=_demo_output(model, pid) if final == "succeeded" else None,
            error="CUDA out of memory. Tried to allocate 2.00 GiB" if final == "failed" else None,
            metrics={"predict_time": round(ran, 3)},
        )
        if final == "succeeded":
            store_files(store, archive, pid, {0: IMAGE}, now=completed + timedelta(seconds=1))
        if hook and final == "failed" and not dead_pid:
            dead_pid = pid
        elif hook:
            set_delivery(
                store,
                pid,
                state="delivered",
                attempts=[(completed + timedelta(seconds=1), 200, None)],
                delivered_at=completed + timedelta(seconds=1),
            )
    dead = 0
    if dead_pid:
        dead = set_delivery(
            store,
            dead_pid,
            state="dead",
            attempts=[(now - timedelta(minutes=50 - 6 * n), 502, "Bad Gateway") for n in range(8)],
        )
    _demo_shown(store, archive, now)
    return Demo(DEMO_SHOWN, dead)


def _demo_output(model: str, pid: str) -> object:
    if model == "openai/whisper":
        return {"transcription": "Thanks for calling, how can I help?", "segments": []}
    if model.startswith("meta/"):
        return ["The", " tracker", " keeps", " watch", "."]
    return [f"https://replicate.delivery/xezq/{pid}/out-0.png"]


def _demo_shown(store: Store, archive: Path, now: datetime) -> None:
    pid = DEMO_SHOWN
    created = now - timedelta(minutes=12, seconds=41)
    store.add_predictions(
        [pid],
        now=created,
        first_poll_at=created,
        labels={"team": "studio", "campaign": "spring-launch"},
        callbacks_to_add=[
            CallbackSpec("webhook", "https://hooks.example.com/replicate", ("completed",))
        ],
    )
    body: dict[str, Any] = {
        "model": "stability-ai/sdxl",
        "version": "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc",
        "created_at": iso(created),
        "input": {
            "prompt": "a lighthouse on a cliff at sunset, oil painting",
            "num_outputs": 4,
            "width": 1024,
            "height": 1024,
            "num_inference_steps": 30,
        },
        "urls": {"web": f"https://replicate.com/p/{pid}"},
    }
    started = created + timedelta(seconds=2.8)
    steps = "".join(
        f"{round(100 * s / 30):3d}%|{'█' * (s // 3):<10}| {s}/30"
        f" [00:{s // 7:02d}<00:{(30 - s) // 7:02d},  7.1{s % 10}it/s]\r"
        for s in (0, 6, 12, 18, 24)
    )
    head = "Using seed: 41892\nLoading pipeline components...: 100%|██████████| 7/7\n"
    answer(store, pid, created + timedelta(seconds=0.6), status="starting", **body)
    answer(
        store,
        pid,
        started + timedelta(seconds=1.9),
        status="processing",
        started_at=iso(started),
        logs=head + steps,
        **body,
    )
    completed = started + timedelta(seconds=4.62)
    outputs = [f"https://replicate.delivery/xezq/{pid}/out-{n}.png" for n in range(4)]
    answer(
        store,
        pid,
        completed + timedelta(seconds=0.5),
        status="succeeded",
        started_at=iso(started),
        completed_at=iso(completed),
        logs=head + steps + "100%|██████████| 30/30 [00:04<00:00,  7.12it/s]",
        output=outputs,
        metrics={"predict_time": 4.62, "image_count": 4},
        **body,
    )
    store_files(
        store,
        archive,
        pid,
        {n: artwork(100 + n) for n in range(4)},
        now=completed + timedelta(seconds=1.5),
    )
    set_delivery(
        store,
        pid,
        state="delivered",
        attempts=[
            (completed + timedelta(seconds=0.7), 503, "Service Unavailable"),
            (completed + timedelta(seconds=2.9), 200, None),
        ],
        delivered_at=completed + timedelta(seconds=2.9),
    )
