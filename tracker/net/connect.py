"""An aiohttp connector that connects only where a ``HostPolicy`` allows.

The addresses are judged where aiohttp has them in hand, after DNS and just
before it connects, so the address judged is the address connected to. Literal
addresses in URLs skip aiohttp's resolver, so this hooks ``_resolve_host``, the
one place that sees both (aiohttp itself documents it as the place for such a
policy); a test (tests/unit/test_webhook_network.py) proves the hook still holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.tracing import Trace

from tracker.net.policy import AddressRefused, HostPolicy


class PolicyConnector(aiohttp.TCPConnector):
    """A TCPConnector that drops the addresses its policy refuses; when none is
    left, the request fails with ``AddressRefused`` and the reason."""

    def __init__(self, policy: HostPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Trace] | None = None
    ) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces=traces)
        allowed = [r for r in results if self.policy.allows(host, r["host"])]
        if not allowed:
            raise AddressRefused(self.policy.refusal(host, [r["host"] for r in results]))
        return allowed
