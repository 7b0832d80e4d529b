"""A loopback TCP relay that keeps the first bytes of every connection, to read its TLS hellos.

Put between a real client and a real server (the client dials ``tap.address``), it forwards
both directions unchanged and keeps the first ``keep`` bytes each way, which hold the clear-text
ClientHello and ServerHello. Standard-library only (``tools/grpcio_group_probe.py`` runs it in
a bare venv).
"""

from __future__ import annotations

import asyncio
import threading

from tests.security.tls_hello import Handshake, parse_handshake

KEEP_BYTES = 64 * 1024


class _Capture:
    def __init__(self) -> None:
        self.up = bytearray()  # client -> server
        self.down = bytearray()  # server -> client


class HelloTap:
    """Relay 127.0.0.1:<ephemeral> -> ``target``; :meth:`handshakes` parses what passed."""

    def __init__(self, target: str, keep: int = KEEP_BYTES) -> None:
        host, _, port = target.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.keep = keep
        self.address = ""
        self._captures: list[_Capture] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[object]] = set()

    def start(self) -> HelloTap:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(5)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def __enter__(self) -> HelloTap:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        capture = _Capture()
        self._captures.append(capture)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.close()
            return

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, seen: bytearray
        ) -> None:
            try:
                while data := await src.read(65536):
                    if len(seen) < self.keep:
                        seen.extend(data[: self.keep - len(seen)])
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        self._writers.update((writer, up_writer))
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await asyncio.gather(
                pump(reader, up_writer, capture.up), pump(up_reader, writer, capture.down)
            )
        finally:
            self._writers.difference_update((writer, up_writer))
            if task is not None:
                self._tasks.discard(task)

    def handshakes(self) -> list[Handshake]:
        """The hellos of every connection so far (one entry per connection, in accept order)."""

        async def snapshot() -> list[tuple[bytes, bytes]]:
            return [(bytes(c.up), bytes(c.down)) for c in self._captures]

        pairs = asyncio.run_coroutine_threadsafe(snapshot(), self._loop).result(5)
        return [parse_handshake(up, down) for up, down in pairs]

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.close()  # ends both pumps of every open connection
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5)

        if self._server is not None:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
