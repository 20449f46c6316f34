"""The gateway's AWS credentials, resolved and refreshed off the event loop.

botocore's default chain covers every source the contract lists (environment,
shared profile, ECS container credentials by full or relative URI, instance
metadata, web identity) and its ``RefreshableCredentials`` already knows when
temporary credentials are due for refresh. But a refresh is a blocking HTTP
call, and the request path runs on the asyncio loop. So a background task asks
botocore for a frozen snapshot in a worker thread every ``refresh_interval``
seconds (botocore refreshes inside that call when expiry is near), and the
request path only ever reads the latest snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import botocore.session
from botocore.credentials import Credentials, ReadOnlyCredentials

from ..errors import GatewayError, Kind
from ..logs import mask

log = logging.getLogger("extproc.credentials")


class CredentialSource:
    """Holds the current frozen credentials and keeps them fresh."""

    def __init__(self, refresh_interval: float = 60.0, session: Any = None) -> None:
        self._session = session or botocore.session.get_session()
        self._resolved: Credentials | None = None
        self._current: ReadOnlyCredentials | None = None
        self._refresh_interval = refresh_interval
        self._task: asyncio.Task[None] | None = None

    def current(self) -> ReadOnlyCredentials:
        """The latest snapshot; never blocks."""
        if self._current is None:
            raise GatewayError(
                503, Kind.UPSTREAM, "the gateway has no AWS credentials yet; its operator must configure them"
            )
        return self._current

    def _refresh_blocking(self) -> None:
        if self._resolved is None:
            self._resolved = self._session.get_credentials()
            if self._resolved is None:
                raise RuntimeError("no AWS credentials found in the default chain")
            log.info("aws credentials resolved", extra={"source": getattr(self._resolved, "method", "unknown")})
        frozen = self._resolved.get_frozen_credentials()
        if self._current is None or frozen.access_key != self._current.access_key:
            log.info("aws credentials in use", extra={"access_key_id": mask(frozen.access_key)})
        self._current = frozen

    async def refresh(self) -> None:
        await asyncio.to_thread(self._refresh_blocking)

    async def start(self) -> None:
        """Resolve once (logging, not raising, on failure) and keep refreshing."""
        try:
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 - any provider failure is logged and retried
            log.error("aws credentials unavailable", extra={"error": str(exc)})
        self._task = asyncio.create_task(self._loop(), name="credential-refresh")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep serving with the last good snapshot
                log.warning("aws credential refresh failed", extra={"error": str(exc)})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
