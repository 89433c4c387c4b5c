"""A real SMTP server (aiosmtpd) on loopback for tests: keeps what arrives."""

from __future__ import annotations

import asyncio
import socket
import threading
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Recorder:
    """aiosmtpd handler: keeps what arrives, counts sessions, refuses on request."""

    def __init__(self, *, require_auth: bool = False) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.sessions: list[Any] = []  # one per EHLO'd connection
        self.tls_sessions = 0
        self.noops = 0
        self.quits = 0
        self.require_auth = require_auth
        self.refuse_rcpt: dict[str, str] = {}  # address -> reply
        self.refuse_data: dict[str, str] = {}  # address -> reply
        self.delay: dict[str, float] = {}  # command -> seconds to wait before replying

    def _session(self, session: Any) -> None:
        with self.lock:
            if not any(s is session for s in self.sessions):
                self.sessions.append(session)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self._session(session)
        if session.ssl is not None:
            self.tls_sessions += 1
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        self._session(session)
        return f"250 {server.hostname}"

    async def handle_NOOP(self, server, session, envelope, arg):
        self.noops += 1
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        self.quits += 1
        return "221 Bye"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        await asyncio.sleep(self.delay.get("MAIL", 0))
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        await asyncio.sleep(self.delay.get("RCPT", 0))
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            if rcpt in self.refuse_data:
                return self.refuse_data[rcpt]
        message = BytesParser(policy=policy.default).parsebytes(envelope.content)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 queued"


class Server:
    """One aiosmtpd controller that can be stopped and started again on the same port."""

    def __init__(self, handler: Recorder, **kwargs: Any) -> None:
        self.handler = handler
        self.port = free_port()
        self.kwargs = kwargs
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, **self.kwargs
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def url(self, scheme: str = "smtp", userinfo: str = "") -> str:
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}"
