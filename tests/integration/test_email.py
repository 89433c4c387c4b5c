"""Email callbacks against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import ssl
import subprocess
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.smtpserver import Recorder, Server, free_port
from tracker.callbacks.email import Mailer, SmtpSettings, parse_smtp_url, redacted
from tracker.callbacks.email_render import render_email
from tracker.domain import Artifact, DeliveryJob
from tracker.exceptions import ConfigError
from tracker.store.artifacts import archived_body

FROM = "Tracker <tracker@example.com>"
TO = "ops@example.com"
USER = "mailer"
PASSWORD = "s3cr3t-P@ss/wörd"
URL_PASSWORD = "s3cr3t-P%40ss%2Fw%C3%B6rd"

PREDICTION: dict[str, Any] = {
    "id": "ufawqhfynnddngldkgtslldrkq",
    "model": "acme/ünïcødé-模型",
    "version": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
    "status": "failed",
    "input": {"prompt": "a cat"},
    "output": ["https://replicate.delivery/a/out-0.png", "https://replicate.delivery/a/out-1.png"],
    "error": "CUDA out of memory — Ошибка ✗ <script>alert('x')</script>",
    "logs": "".join(f"log line {n}\n" for n in range(1, 31)),
    "metrics": {"predict_time": 3.59},
    "urls": {"web": "https://replicate.com/p/ufawqhfynnddngldkgtslldrkq"},
    "created_at": "2025-07-12T07:27:54.577Z",
    "started_at": "2025-07-12T07:27:56.077123456Z",
    "completed_at": "2025-07-12T07:27:59.700Z",
    "data_removed": False,
}


def make_job(
    payload: str | dict[str, Any] = PREDICTION,
    *,
    target: str = TO,
    message_id: str = "d1f0c2a4-5b6e-4c7d-8e9f-0a1b2c3d4e5f",
    prediction_id: str = "ufawqhfynnddngldkgtslldrkq",
    event: str = "completed",
) -> DeliveryJob:
    return DeliveryJob(
        id=7,
        message_id=message_id,
        prediction_id=prediction_id,
        kind="email",
        target=target,
        event=event,
        payload=payload if isinstance(payload, str) else json.dumps(payload),
        attempts=0,
        created_at=datetime(2025, 7, 12, 7, 28, tzinfo=UTC),
    )


def parts(message: EmailMessage) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_content()
        for part in message.walk()
        if part.get_content_maintype() == "text"
    }


# --------------------------------------------------------------------------- the server


def check_password(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data == LoginPassword(
        USER.encode(), PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # handled=False: the server replies 535


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(Recorder())
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def auth_server() -> Iterator[Server]:
    srv = Server(Recorder(require_auth=True), authenticator=check_password, auth_require_tls=False)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (needs the openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpSettings("mail.example.com", 25)),
        ("smtp://mail.example.com/", SmtpSettings("mail.example.com", 25)),
        (
            "smtp://bob:hunter2@mail.example.com:587",
            SmtpSettings("mail.example.com", 587, "bob", "hunter2"),
        ),
        (
            f"smtps://bob%40example.com:{URL_PASSWORD}@Mail.Example.com",
            SmtpSettings(
                "mail.example.com", 465, "bob@example.com", PASSWORD, use_tls=True, start_tls=False
            ),
        ),
        ("SMTPS://relay:2465", SmtpSettings("relay", 2465, use_tls=True, start_tls=False)),
        ("smtp://apikey@[::1]:2525", SmtpSettings("::1", 2525, "apikey")),
    ],
)
def test_parse_smtp_url(url: str, expected: SmtpSettings) -> None:
    settings = parse_smtp_url(url)
    assert settings == expected
    assert settings.password == expected.password


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "mail.example.com:25",
        "http://user:topsecret@mail.example.com",
        "smtp:/user:topsecret@mail.example.com",
        "smtp://user:topsecret@",
        "smtp://user:topsecret@mail.example.com:99999",
        "smtp://user:topsecret@mail.example.com:2x5",
        "smtp://user:topsecret@mail.example.com:0",
        "smtp://user:top/secret@mail.example.com",  # '/' must be percent-encoded
        "smtp://user:top?secret@mail.example.com",
        "smtp://user:top#secret@mail.example.com",
        "smtp://user:topsecret@mail.example.com/path",
        "smtp://user:top secret@mail.example.com",
        "smtp://user:topsecret@[::1",
        "smtp://:topsecret@mail.example.com",
    ],
)
def test_parse_smtp_url_rejects_without_quoting_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_smtp_url(url)
    shown = "".join(traceback.format_exception(caught.value))
    for fragment in ("topsecret", "top/secret", "secret@", "top?", "top#"):
        assert fragment not in shown


def test_the_password_is_not_in_the_repr() -> None:
    settings = parse_smtp_url(f"smtp://{USER}:{URL_PASSWORD}@mail.example.com")
    assert settings.password == PASSWORD
    for shown in (repr(settings), str(settings)):
        assert PASSWORD not in shown and URL_PASSWORD not in shown
        assert "mail.example.com" in shown


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"smtp://{USER}:{URL_PASSWORD}@mail.example.com:587",
            f"smtp://{USER}:***@mail.example.com:587",
        ),
        ("smtps://mail.example.com", "smtps://mail.example.com"),
        ("smtp://apikey@mail.example.com", "smtp://apikey@mail.example.com"),
        ("smtp://user:pa/ss@w@rd@host", "smtp://user:***@host"),
        ("user:password@host", "***@host"),
    ],
)
def test_redacted(url: str, expected: str) -> None:
    assert redacted(url) == expected


# --------------------------------------------------------------------------- rendering


def test_render_email_headers_and_parts() -> None:
    job = make_job()
    message = render_email(job, FROM)
    assert message["Subject"] == "[tracker] ufawqhfynnddngldkgtslldrkq failed"
    assert message["From"] == FROM
    assert message["To"] == TO
    assert message["Message-ID"] == f"<{job.message_id}@tracker>"
    assert message["Date"] is not None
    assert message.get_content_type() == "multipart/alternative"
    # A retry of the same delivery carries the same Message-ID.
    assert render_email(job, FROM)["Message-ID"] == message["Message-ID"]
    assert render_email(make_job(message_id="other"), FROM)["Message-ID"] != message["Message-ID"]

    bodies = parts(message)
    assert set(bodies) == {"text/plain", "text/html"}
    text, page = bodies["text/plain"], bodies["text/html"]
    for body in (text, page):
        assert "completed" in body
        assert "acme/ünïcødé-模型" in body
        assert "2025-07-12T07:27:54.577Z" in body
        assert "2025-07-12T07:27:59.700Z" in body
        assert "1.5 s" in body  # queued: started - created
        assert "3.6 s" in body  # ran: completed - started
        assert "3.59" in body
        assert "log line 30" in body and "log line 11" in body
        assert "log line 10\n" not in body  # only the last 20 lines
        assert "Ошибка ✗" in body
    assert "https://replicate.delivery/a/out-0.png" in text
    assert "https://replicate.delivery/a/out-1.png" in text
    assert "<script>alert('x')</script>" in text  # plain text is shown as it is
    assert '<a href="https://replicate.delivery/a/out-0.png">' in page
    assert '<a href="https://replicate.delivery/a/out-1.png">' in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


def test_render_email_escapes_everything_in_the_html() -> None:
    payload = {
        "status": "<b>done</b>",
        "model": "<img src=x onerror=alert(1)>",
        "output": 'https://example.com/a?b=1&c="<x>"',
        "error": "<script>alert(1)</script>",
        "logs": "<iframe src=evil>\n</pre><script>",
        "metrics": {"predict_time": "<i>"},
        "created_at": "<svg onload=alert(1)>",
    }
    page = parts(render_email(make_job(payload), FROM))["text/html"]
    for raw in ("<b>", "<img", "<script", "<iframe", "</pre><", "<i>", "<svg", '"<x>"'):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp;c=&quot;&lt;x&gt;&quot;" in page


def test_render_email_subject_with_non_ascii_and_line_breaks() -> None:
    message = render_email(
        make_job({"status": "échoué ✗\r\nBcc: victim@example.com\u2028x"}, prediction_id="p1"),
        FROM,
    )
    assert message["Subject"] == "[tracker] p1 échoué ✗ Bcc: victim@example.com x"
    assert message["Bcc"] is None
    raw = message.as_bytes()
    assert b"\nBcc:" not in raw
    reparsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert reparsed["Subject"] == message["Subject"]


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json at all",
        "[1, 2, 3]",
        "null",
        '"a string"',
        "{}",
        '{"id": null, "status": null, "output": null, "logs": null}',
        json.dumps(
            {"status": 5, "output": {"a": [1, 2, {"b": None}]}, "logs": 7, "error": {"x": 1}}
        ),
        json.dumps({"metrics": [], "created_at": "yesterday", "started_at": 5, "urls": "x"}),
        json.dumps(
            {"metrics": {"predict_time": True}, "completed_at": "0001-01-01T00:00:00+01:00"}
        ),
        json.dumps({"output": [1, None, "https://x.test/a", {"k": "v"}, ["n"]] * 300}),
        json.dumps({"output": "data:image/png;base64," + "A" * 200_000}),
        json.dumps({"output": [], "error": "", "logs": ""}),
        json.dumps({"logs": "".join(f"line {n}\r\n" for n in range(200_000))}),
        json.dumps({"logs": "x" * 500_000 + "\n" + "progress 10%\rprogress 100%\n"}),
        json.dumps({"logs": "\x1b[31mred\x1b[0m \x00\x07\x1b bell\n\ud800 lone surrogate"}),
        json.dumps({"error": "\ud83d broken surrogate \udfff", "status": "\udc80"}),
        json.dumps({"output": float("nan"), "metrics": {"predict_time": float("inf")}}),
        "[" * 100_000 + "]" * 100_000,
        '{"id": "x", "output": ' + "[" * 5000 + "]" * 5000 + "}",
    ],
)
def test_render_email_never_raises(payload: str) -> None:
    message = render_email(make_job(payload), FROM)
    assert message["Subject"].startswith("[tracker] ufawqhfynnddngldkgtslldrkq ")
    raw = message.as_bytes()  # it must also serialize
    assert len(raw) < 1_000_000
    reparsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert set(parts(reparsed)) == {"text/plain", "text/html"}  # type: ignore[arg-type]


def test_render_email_missing_status_is_unknown_and_tail_of_huge_logs() -> None:
    logs = "".join(f"line {n}\n" for n in range(100_000))
    message = render_email(make_job({"logs": logs}), FROM)
    assert message["Subject"] == "[tracker] ufawqhfynnddngldkgtslldrkq unknown"
    text = parts(message)["text/plain"]
    assert "last 20 of 100000 lines" in text
    assert "line 99999" in text and "line 99980" in text and "line 99979" not in text


def test_render_email_output_shapes() -> None:
    single = parts(render_email(make_job({"output": "https://x.test/one.png"}), FROM))
    assert '<a href="https://x.test/one.png">' in single["text/html"]
    other = parts(render_email(make_job({"output": {"text": "héllo", "n": 3}}), FROM))
    for body in other.values():
        assert "héllo" in body and '"n": 3' in body.replace("&quot;", '"')
    none = parts(render_email(make_job({"status": "starting"}, event="start"), FROM))
    assert "(none)" in none["text/plain"]


def test_render_email_of_the_archived_event_names_the_files() -> None:
    when = datetime(2025, 7, 12, 7, 30, tzinfo=UTC)

    def stored(position: int, size: int, content_type: str | None) -> Artifact:
        return Artifact(
            id=position + 1,
            prediction_id="ufawqhfynnddngldkgtslldrkq",
            position=position,
            source_url=f"https://replicate.delivery/a/out-{position}.png",
            stored_url=f"file:///srv/archive/ufawqhfynnddngldkgtslldrkq/{position}-out.png",
            state="stored",
            bytes=size,
            sha256=f"{position}" * 64,
            content_type=content_type,
            attempts=1,
            last_error=None,
            created_at=when,
            stored_at=when,
        )

    files = [stored(0, 1_500_000, "image/png"), stored(1, 12, "<b>x</b>\r\nBcc: v@example.com")]
    body = archived_body({**PREDICTION, "status": "succeeded"}, files)
    message = render_email(make_job(body, event="archived"), FROM)
    assert message["Subject"] == "[tracker] ufawqhfynnddngldkgtslldrkq succeeded, 2 files archived"
    assert message["X-Tracker-Event"] == "archived" and message["Bcc"] is None
    text, page = parts(message)["text/plain"], parts(message)["text/html"]
    headline = "Prediction ufawqhfynnddngldkgtslldrkq has its output files archived"
    assert text.startswith(headline + "\n") and headline in page
    first = (
        "file:///srv/archive/ufawqhfynnddngldkgtslldrkq/0-out.png"
        f" (1,500,000 bytes, image/png, sha256 {'0' * 64})"
    )
    assert f"Archived files:\n  {first}\n" in text
    assert "12 bytes, <b>x</b> Bcc: v@example.com, sha256" in text  # one line, as given
    assert f"<li>{first}</li>" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt; Bcc: v@example.com" in page
    # Files of another event, or a body whose artifacts are not a list of objects: no list.
    completed = render_email(make_job(body), FROM)
    assert completed["Subject"].endswith(" succeeded")
    assert "Archived files" not in parts(completed)["text/plain"]
    for odd in ("files", [1, None, "x"], {"a": 1}):
        weird = render_email(make_job({**body, "artifacts": odd}, event="archived"), FROM)
        assert weird["Subject"] == "[tracker] ufawqhfynnddngldkgtslldrkq succeeded"


# --------------------------------------------------------------------------- sending


async def test_a_message_arrives_intact(server: Server) -> None:
    job = make_job()
    async with Mailer(parse_smtp_url(server.url()), FROM, timeout=5) as mailer:
        result = await mailer.send(job)
    assert result.ok, result
    assert result.status_code == 250
    assert not result.permanent and result.error is None
    assert result.duration_ms is not None and result.duration_ms >= 0

    assert server.handler.envelopes == [("tracker@example.com", [TO])]
    [message] = server.handler.messages
    assert message["Subject"] == "[tracker] ufawqhfynnddngldkgtslldrkq failed"
    assert message["From"] == FROM
    assert message["To"] == TO
    assert message["Message-ID"] == f"<{job.message_id}@tracker>"
    bodies = parts(message)
    assert set(bodies) == {"text/plain", "text/html"}
    for body in bodies.values():
        assert "https://replicate.delivery/a/out-0.png" in body
        assert "CUDA out of memory — Ошибка ✗" in body
        assert "log line 30" in body
        assert "acme/ünïcødé-模型" in body
    assert "<script>" not in bodies["text/html"]
    assert "&lt;script&gt;" in bodies["text/html"]
    assert server.handler.quits == 1  # close() says goodbye


async def test_fifty_concurrent_sends_use_at_most_two_connections(server: Server) -> None:
    async with Mailer(parse_smtp_url(server.url()), FROM, max_connections=2, timeout=5) as mailer:
        jobs = [make_job(message_id=f"m-{n}", target=f"user{n}@example.com") for n in range(50)]
        results = await asyncio.gather(*(mailer.send(job) for job in jobs))
        assert all(r.ok and r.status_code == 250 for r in results), results
        # and the connections stay open for the next message
        assert (await mailer.send(make_job(message_id="one-more"))).ok
    assert len(server.handler.messages) == 51
    assert {m["Message-ID"] for m in server.handler.messages} == {
        f"<m-{n}@tracker>" for n in range(50)
    } | {"<one-more@tracker>"}
    assert 1 <= len(server.handler.sessions) <= 2
    assert server.handler.quits == len(server.handler.sessions)


async def test_sequential_sends_reuse_one_connection(server: Server) -> None:
    async with Mailer(parse_smtp_url(server.url()), FROM, timeout=5) as mailer:
        for n in range(5):
            assert (await mailer.send(make_job(message_id=f"s-{n}"))).ok
    assert len(server.handler.messages) == 5
    assert len(server.handler.sessions) == 1


async def test_an_old_idle_connection_is_checked_with_noop(server: Server) -> None:
    async with Mailer(parse_smtp_url(server.url()), FROM, timeout=5) as mailer:
        mailer.IDLE_CHECK_AFTER = 0.0
        assert (await mailer.send(make_job())).ok
        assert (await mailer.send(make_job())).ok
    assert server.handler.noops == 1
    assert len(server.handler.sessions) == 1


async def test_server_down_is_a_retryable_failure() -> None:
    settings = parse_smtp_url(f"smtp://{USER}:{URL_PASSWORD}@127.0.0.1:{free_port()}")
    async with Mailer(settings, FROM, timeout=5) as mailer:
        result = await mailer.send(make_job())
    assert not result.ok and not result.permanent
    assert result.status_code is None
    assert result.error is not None and "connection refused" in result.error
    assert PASSWORD not in result.error and "\n" not in result.error


async def test_a_silent_server_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        async with Mailer(parse_smtp_url(f"smtp://127.0.0.1:{port}"), FROM, timeout=0.3) as mailer:
            result = await mailer.send(make_job())
    assert not result.ok and not result.permanent
    assert result.error is not None and "timed out" in result.error


async def test_one_attempt_is_bounded_by_the_timeout(server: Server) -> None:
    server.handler.delay.update(MAIL=0.4, RCPT=0.4)  # each reply in time, all of them not
    async with Mailer(parse_smtp_url(server.url()), FROM, timeout=0.6) as mailer:
        slow = await mailer.send(make_job())
        server.handler.delay.clear()
        fast = await mailer.send(make_job())
    assert not slow.ok and not slow.permanent
    assert slow.error is not None and "timed out" in slow.error
    assert slow.duration_ms is not None and 500 <= slow.duration_ms < 2000
    assert fast.ok
    assert len(server.handler.messages) == 1


async def test_recipient_refused_with_550_is_permanent(server: Server) -> None:
    server.handler.refuse_rcpt["nobody@example.com"] = (
        "550 5.1.1 <nobody@example.com>: no such user"
    )
    server.handler.refuse_rcpt["full@example.com"] = "452 4.2.2 mailbox full"
    async with Mailer(parse_smtp_url(server.url()), FROM, timeout=5) as mailer:
        refused = await mailer.send(make_job(target="nobody@example.com"))
        later = await mailer.send(make_job(target="full@example.com"))
        fine = await mailer.send(make_job())
    assert not refused.ok and refused.permanent
    assert refused.status_code == 550
    assert refused.error is not None and "no such user" in refused.error
    assert not later.ok and not later.permanent and later.status_code == 452
    assert fine.ok
    assert len(server.handler.messages) == 1
    assert len(server.handler.sessions) == 1  # refusals do not cost the connection


async def test_message_refused_at_data_is_permanent(server: Server) -> None:
    server.handler.refuse_data[TO] = "554 5.7.1 message content rejected"
    async with Mailer(parse_smtp_url(server.url()), FROM, timeout=5) as mailer:
        result = await mailer.send(make_job())
    assert not result.ok and result.permanent and result.status_code == 554
    assert result.error is not None and "rejected" in result.error


async def test_a_target_with_a_line_break_is_permanent_not_an_exception(server: Server) -> None:
    async with Mailer(parse_smtp_url(server.url()), FROM, timeout=5) as mailer:
        result = await mailer.send(make_job(target="ops@example.com\r\nBcc: x@example.com"))
    assert not result.ok and result.permanent
    assert server.handler.messages == []


async def test_auth_with_the_right_password(auth_server: Server) -> None:
    settings = parse_smtp_url(auth_server.url(userinfo=f"{USER}:{URL_PASSWORD}@"))
    async with Mailer(settings, FROM, timeout=5) as mailer:
        result = await mailer.send(make_job())
    assert result.ok, result
    assert len(auth_server.handler.messages) == 1


async def test_auth_with_a_wrong_password(
    auth_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ng-Pa55word"
    settings = parse_smtp_url(auth_server.url(userinfo=f"{USER}:{wrong}@"))
    async with Mailer(settings, FROM, timeout=5) as mailer:
        result = await mailer.send(make_job())
    assert not result.ok and not result.permanent
    assert result.status_code == 535
    assert result.error is not None and "authentication failed" in result.error
    assert wrong not in result.error and "\n" not in result.error
    assert wrong not in caplog.text
    assert auth_server.handler.messages == []


async def test_no_auth_is_refused(auth_server: Server) -> None:
    async with Mailer(parse_smtp_url(auth_server.url()), FROM, timeout=5) as mailer:
        result = await mailer.send(make_job())
    assert not result.ok and not result.permanent and result.status_code == 530


async def test_reconnects_after_the_server_restarts(server: Server) -> None:
    async with Mailer(parse_smtp_url(server.url()), FROM, timeout=5) as mailer:
        assert (await mailer.send(make_job(message_id="before"))).ok
        server.stop()
        down = await mailer.send(make_job(message_id="while-down"))
        assert not down.ok and not down.permanent
        server.start()
        assert (await mailer.send(make_job(message_id="after"))).ok
        # a restart between two sends goes unnoticed: stale connections are replaced
        pair = [make_job(message_id=f"pair-{n}") for n in range(2)]
        assert all(r.ok for r in await asyncio.gather(*(mailer.send(j) for j in pair)))
        server.stop()
        server.start()
        again = [make_job(message_id=f"again-{n}") for n in range(3)]
        results = await asyncio.gather(*(mailer.send(j) for j in again))
        assert all(r.ok for r in results), results
    assert [m["Message-ID"] for m in server.handler.messages][:2] == [
        "<before@tracker>",
        "<after@tracker>",
    ]
    assert len(server.handler.messages) == 7


async def test_send_after_close_fails_cleanly(server: Server) -> None:
    mailer = Mailer(parse_smtp_url(server.url()), FROM, timeout=5)
    await mailer.close()
    result = await mailer.send(make_job())
    assert not result.ok and result.error == "the mailer is closed"


def test_bad_sender_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Mailer(SmtpSettings("localhost", 25), "not an address")


# --------------------------------------------------------------------------- TLS


async def test_starttls_when_offered(certificate: tuple[Path, Path]) -> None:
    srv = Server(
        Recorder(require_auth=True),
        tls_context=server_tls(certificate),
        authenticator=check_password,
    )  # AUTH is offered only after STARTTLS
    srv.start()
    try:
        settings = parse_smtp_url(srv.url(userinfo=f"{USER}:{URL_PASSWORD}@"))
        async with Mailer(settings, FROM, timeout=5, tls_context=client_tls(certificate)) as m:
            result = await m.send(make_job())
    finally:
        srv.stop()
    assert result.ok, result
    assert srv.handler.tls_sessions == 1
    assert len(srv.handler.messages) == 1


async def test_smtps_implicit_tls(certificate: tuple[Path, Path]) -> None:
    srv = Server(Recorder(), ssl_context=server_tls(certificate))
    srv.start()
    try:
        settings = parse_smtp_url(srv.url("smtps"))
        async with Mailer(settings, FROM, timeout=5, tls_context=client_tls(certificate)) as m:
            result = await m.send(make_job())
    finally:
        srv.stop()
    assert result.ok, result
    assert len(srv.handler.messages) == 1


async def test_an_untrusted_certificate_is_a_retryable_failure(
    certificate: tuple[Path, Path],
) -> None:
    srv = Server(Recorder(), ssl_context=server_tls(certificate))
    srv.start()
    try:
        async with Mailer(parse_smtp_url(srv.url("smtps")), FROM, timeout=5) as mailer:
            result = await mailer.send(make_job())
    finally:
        srv.stop()
    assert not result.ok and not result.permanent
    assert result.error is not None and "TLS" in result.error
    assert srv.handler.messages == []
