"""``serve --workers N``: N worker processes sharing the ports, one supervisor.

Python decodes on one core per process, so one host scales out by processes. Each worker is a
full ``Service`` whose receivers bind the same ports with ``SO_REUSEPORT`` (the kernel spreads
connections over them) and whose group commit writes to the shared database; totals stay exact
as with any number of replicas. The supervisor:
- migrates the database once, then starts the workers and prints the ready line when all
  listen;
- receives every worker's commits over one queue (``collector.runtime.fanin``) and calls its own
  ``CommitListener``s: the seam where the one metrics endpoint of the host is fed;
- forwards SIGTERM/SIGINT; each worker stops intake, commits what it accepted and says
  ``stopped`` as its last message, so when ``stop`` returns every commit has been delivered;
- restarts a worker that died while serving.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from typing import Any

from collector import logs
from collector.config import Config
from collector.model import CommitListener
from collector.runtime.fanin import Forwarder, Outbox, RemoteTelemetry, committed_from
from collector.runtime.service import metrics_export
from collector.runtime.summaries import Totals, summary
from collector.telemetry import SelfTelemetry

logger = logging.getLogger(__name__)
_spawn = multiprocessing.get_context("spawn")  # no fork: gRPC and asyncio state stay behind


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Supervisor:
    def __init__(
        self, config: Config, workers: int, listeners: Sequence[CommitListener] = ()
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        r = config.receivers
        receivers = r.model_copy(update={
            "grpc_port": r.grpc_port or _free_port(r.host),
            "http_port": r.http_port or _free_port(r.host),
        })  # fmt: skip
        self.config = config.model_copy(update={
            "receivers": receivers,
            "database": config.database.model_copy(update={"migrate_on_start": False}),
            "metrics": None,  # the supervisor owns the host's one metrics endpoint
        })  # fmt: skip
        self._migrate = config.database.migrate_on_start
        self.revision: str | None = None
        self.totals = Totals()
        self._ports: tuple[int, int] = (0, 0)
        self.listeners: list[CommitListener] = [self.totals, *listeners]
        self.metrics = metrics_export(config.metrics, self.listeners, config.pricing.currency)
        self.telemetry: SelfTelemetry | None = None
        if self.metrics is not None and self.metrics.config.self_telemetry:
            self.telemetry = SelfTelemetry(self.metrics.meter)
            self.telemetry.watch_pending(lambda: sum(self._pending))
        self._pending = [0] * workers
        self.pending = self._pending
        """Reports each worker holds uncommitted (reported with self-telemetry on)."""
        self.committed = [0] * workers
        """Reports committed by each worker, as delivered to the supervisor."""
        self._queue: Any = _spawn.Queue()
        self._processes: list[BaseProcess] = []
        self._ready = [threading.Event() for _ in range(workers)]
        self._stopped = [threading.Event() for _ in range(workers)]
        self._stopping = False
        self._reader = threading.Thread(target=self._read, name="tokenbridge-fanin", daemon=True)

    @property
    def grpc_port(self) -> int:
        return self.config.receivers.grpc_port

    @property
    def http_port(self) -> int:
        return self.config.receivers.http_port

    def ports(self) -> dict[str, int | None]:
        metrics = self.metrics.port if self.metrics is not None else None
        return {"grpc": self.grpc_port, "http": self.http_port, "metrics": metrics}

    def start(self, timeout: float = 60.0) -> None:
        db = self.config.database
        self.revision = asyncio.run(
            _migrate(db.url, self._migrate, self.config.aggregation.timezone, db.layout)
        )
        if self.metrics is not None:
            self.metrics.start()
        self._processes = [self._spawn(i) for i in range(len(self._ready))]
        self._reader.start()
        deadline = time.monotonic() + timeout
        for index, ready in enumerate(self._ready):
            if not ready.wait(max(0.0, deadline - time.monotonic())):
                self.stop()
                raise RuntimeError(f"worker {index} did not start")

    def _spawn(self, index: int) -> BaseProcess:
        process = _spawn.Process(
            target=worker_main,
            args=(self.config.model_dump(), index, self._queue),
            name=f"tokenbridge-worker-{index}",
        )  # fmt: skip
        process.start()
        return process

    def stop(self, timeout: float = 60.0) -> None:
        """Forward SIGTERM, wait until every worker drained and said so. Idempotent."""
        self._stopping = True
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for index, process in enumerate(self._processes):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                logger.error("worker %d did not stop in %.0fs, killing it", index, timeout)
                process.kill()
                process.join()
            # Its last message is queued before it exits; wait for the reader to deliver it.
            if not self._stopped[index].wait(5.0):
                logger.error("worker %d exited without a graceful stop", index)
                self._stopped[index].set()
        if self._reader.is_alive():
            self._reader.join()
        if self.metrics is not None:
            self.metrics.shutdown()
        logger.info(
            "tokenbridge stopped: %d reports committed by %d workers (%s)", sum(self.committed),
            len(self.committed), ", ".join(str(n) for n in self.committed),
        )  # fmt: skip

    def _read(self) -> None:
        while not all(event.is_set() for event in self._stopped):
            try:
                message = self._queue.get(timeout=0.5)
            except queue.Empty:
                self._watch()
                continue
            self._handle(message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind, index = message[0], message[1]
        if kind == "ready":
            self._ready[index].set()
        elif kind == "stopped":
            self._stopped[index].set()
        elif kind == "committed":
            _worker, committed = committed_from(message)
            self.committed[index] += len(committed.reports)
            for listener in self.listeners:
                try:
                    listener(committed)
                except Exception:
                    logger.exception("commit listener failed")
            if self.telemetry is not None:
                self.telemetry.committed(committed)
        else:
            self._telemetry(kind, index, message)

    def _telemetry(self, kind: str, index: int, message: tuple[Any, ...]) -> None:
        """A worker's self-telemetry event, counted in the supervisor's one registry."""
        if kind == "pending":
            self._pending[index] = message[2]
        elif self.telemetry is not None and kind == "failed":
            self.telemetry.failed()
        elif self.telemetry is not None and kind == "retryable":
            self.telemetry.retryable(message[2])
        elif kind == "ignored":
            self.totals.add_ignored(message[2])
            if self.telemetry is not None:
                self.telemetry.ignored(message[2])

    def _watch(self) -> None:
        """Restart a worker that died while serving."""
        if self._stopping:
            return
        for index, process in enumerate(self._processes):
            if not process.is_alive() and not self._stopped[index].is_set():
                logger.error("worker %d exited (%s), restarting it", index, process.exitcode)
                self._processes[index] = self._spawn(index)


async def _migrate(url: str, upgrade: bool, zone: str, layout: str = "tokenbridge") -> str | None:
    """Migrate (when ``upgrade``) and return the schema revision; None when the database does
    not answer and need not be migrated (the workers answer retryable until it does). A
    changed time zone is refused here, once, with its one-line message. The gpustack layout
    checks GPUStack's schema (``SchemaError``) and migrates tokenbridge's tables beside it."""
    from exporters.sql import migrate
    from exporters.sql.engine import create_engine
    from exporters.sql.gpustack import migrate as gpustack_migrate
    from exporters.sql.settings import check_timezone

    engine = create_engine(url)
    try:
        if layout == "gpustack":
            async with engine.connect() as conn:
                await gpustack_migrate.check(conn)
            if upgrade:
                await gpustack_migrate.upgrade(engine)
            return await gpustack_migrate.current(engine)
        if upgrade:
            await migrate.upgrade(engine)
            await check_timezone(engine, zone, datetime.now(UTC).replace(tzinfo=None))
            return await migrate.current(engine)
        return migrate.head() if await migrate.is_current(engine) else None
    finally:
        await engine.dispose()


def worker_main(config_data: dict[str, Any], index: int, outbox: Outbox) -> None:
    config = Config.model_validate(config_data)
    logs.setup(config.log.level, config.log.format, worker=index)
    asyncio.run(_work(config, index, outbox))


async def _work(config: Config, index: int, outbox: Outbox) -> None:
    from collector.runtime.service import Service, serve_until_signalled

    # Always: the supervisor's summary line counts pending and ignored from it, with or
    # without a metrics endpoint.
    remote = RemoteTelemetry(outbox, index)
    if index > 0:  # one pruner per host (SQLite has no advisory lock to take turns with)
        config = config.model_copy(
            update={"retention": config.retention.model_copy(update={"interval": 0})}
        )
    service = Service(config, [Forwarder(outbox, index)], reuse_port=True, telemetry=remote)
    await serve_until_signalled(
        service, lambda s: outbox.put(("ready", index, s.grpc.port, s.http.port))
    )
    outbox.put(("stopped", index))


def serve(
    config: Config, workers: int, listeners: Sequence[CommitListener] = (),
    ready: Callable[[Supervisor], None] = lambda _s: None,
) -> None:  # fmt: skip
    """The supervisor's main: start, call ``ready``, log a summary every
    ``log.summary_interval`` seconds, stop on SIGTERM/SIGINT."""
    supervisor = Supervisor(config, workers, listeners)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    supervisor.start()
    ready(supervisor)
    interval = config.log.summary_interval
    last = supervisor.totals.counts()
    try:
        while not stop.wait(interval or None):
            now = supervisor.totals.counts()
            logger.info("%s", summary(interval, now, last, sum(supervisor.pending)))
            last = now
    finally:
        supervisor.stop()
