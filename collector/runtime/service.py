"""Wiring: the one module that knows every stage. Start sinks first, receivers last; stop in
reverse, so everything a receiver accepted is committed before the sinks close."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from collector.aggregation.pricing.watch import PriceWatcher, Pricing, build
from collector.aggregation.rules import Estimation
from collector.commit import GroupCommit
from collector.config import Config, MetricsConfig
from collector.credentials import Credentials
from collector.inflight import InFlight
from collector.ingest import Ingest
from collector.mapping.catalog import Catalog, catalog_watcher
from collector.mapping.fields import FieldMapper, MappingRules
from collector.mapping.gpustack_catalog import GpustackCatalog
from collector.mapping.points import MetricRules
from collector.mapping.producers import merged
from collector.model import CommitListener, Operation
from collector.receivers import tls
from collector.receivers.body import Timeouts
from collector.receivers.grpc import GrpcReceiver
from collector.receivers.http import HttpReceiver, build_app
from collector.receivers.status import uncounted
from collector.reload import FileWatcher
from collector.runtime.summaries import Totals, log_summaries
from collector.telemetry import SelfTelemetry, TelemetrySink, count_writes
from exporters.metrics.provider import MetricsExport
from exporters.metrics.usage import UsageMetrics
from exporters.sql import migrate
from exporters.sql.engine import create_engine
from exporters.sql.gpustack import catalog_source
from exporters.sql.gpustack import migrate as gpustack_migrate
from exporters.sql.gpustack.sink import GpustackSink
from exporters.sql.retention import COMMAND_TIMEOUT, Policy, Pruner
from exporters.sql.settings import TimezoneChanged, check_timezone
from exporters.sql.sink import SqlSink

logger = logging.getLogger(__name__)
GC_THRESHOLDS = (10_000, 10, 10)
"""Cyclic collector thresholds of a serving process (CPython's default is 700, 10, 10)."""


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a serving process; call once started.

    Decoding allocates tens of thousands of containers per request (a 1,000-span OTLP/JSON
    body is ~100k dicts and lists), nearly all freed by reference counting; with the default
    threshold of 700 the collector runs ~140 times per such request and often walks the whole
    heap. Measured with the bench load: OTLP/JSON 18.6k -> 28.6k committed spans/s, OTLP/gRPC
    +6%. ``gc.freeze()`` moves what start-up built (modules, descriptors, the engine) out of
    the collector's sight for good. Reference cycles are still collected, only less often."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def mapping_rules(config: Config) -> MappingRules:
    defaults = MappingRules()
    operations = dict(defaults.operation_names)
    for name, stored in config.mapping.operations.items():
        operation = Operation.parse(stored)
        if operation is None:
            raise ValueError(f"mapping.operations.{name}: unknown operation {stored!r}")
        operations[name] = operation
    extra = [rule.rule() for rule in config.mapping.producer_rules]
    return MappingRules(
        field_keys={**defaults.field_keys,
                    **{k: tuple(v) for k, v in config.mapping.fields.items()}},
        operation_names=operations,
        skipped_operations=defaults.skipped_operations | set(config.mapping.skip_operations),
        producer_rules=tuple(merged(defaults.producer_rules, extra)),
    )  # fmt: skip


def pricing(config: Config) -> Pricing | None:
    """The live price table, or None when ``pricing.enabled`` is false; ``ValueError`` for a
    bad price file (its row and key named)."""
    p = config.pricing
    if not p.enabled:
        return None
    return Pricing(build(p.path, p.currency, p.builtin), p.currency)


def metrics_export(
    config: MetricsConfig | None, listeners: list[CommitListener], currency: str = "USD"
) -> MetricsExport | None:
    """The re-export of committed usage (its listener added to ``listeners``), or None when
    the ``metrics`` section is null or disabled."""
    if config is None or not config.enabled:
        return None
    export = MetricsExport(config)
    listeners.append(UsageMetrics(export.meter, config.labels, config.label_limits,
                                  config.label_limit, config.overflow_value,
                                  currency, config.max_series))  # fmt: skip
    return export


class Service:
    def __init__(
        self,
        config: Config,
        listeners: list[CommitListener] | None = None,
        reuse_port: bool = False,
        telemetry: TelemetrySink | None = None,
    ) -> None:
        """``telemetry``: where self-telemetry goes instead of this service's own metrics (a
        worker forwards it to its supervisor)."""
        self.config = config
        db = config.database
        self.engine = create_engine(db.url, connect_timeout=db.connect_timeout,
                                    pool_size=db.pool_size,
                                    command_timeout=db.command_timeout)  # fmt: skip
        agg = config.aggregation
        lim = config.limits
        # Its own engine: an archive's COPY of a month may outlast database.command_timeout.
        self._retention_engine = create_engine(db.url, connect_timeout=db.connect_timeout,
                                               pool_size=1, command_timeout=COMMAND_TIMEOUT)
        self.pricing = pricing(config)
        self.gpustack = db.layout == "gpustack"
        self.pruner: Pruner | None = None
        horizon = None
        self.sink: SqlSink | GpustackSink
        if self.gpustack:  # GPUStack's own tables: nothing is priced, partitioned or pruned there
            self.sink = GpustackSink(self.engine, ZoneInfo(agg.timezone),
                                     max_reject_rows=lim.max_reject_rows)  # fmt: skip
        else:
            self.pruner = Pruner(self._retention_engine, retention_policy(config))
            horizon = self.pruner.horizon
            self.sink = SqlSink(self.engine, ZoneInfo(agg.timezone), agg.extra_dimensions,
                                max_reject_rows=lim.max_reject_rows, horizon=horizon,
                                pricing=self.pricing)  # fmt: skip
        self.totals = Totals()
        listeners = [self.totals, *(listeners or [])]
        self.metrics, self.telemetry = self._metrics(listeners, telemetry)
        writer = self.sink if self.telemetry is None else count_writes(self.sink, self.telemetry)
        self.commit = GroupCommit(
            writer, config.commit.settings(self.engine.dialect.name), listeners
        )
        if self.telemetry is not None:
            self.telemetry.watch_pending(lambda: self.commit.pending)
        # The watcher notes the file's state before the first read: a change made meanwhile
        # is picked up by the first check, not missed.
        self._watcher: FileWatcher[Catalog] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._retaining: asyncio.Task[None] | None = None
        if config.catalog is not None and config.catalog.reload_interval > 0:
            self._watcher = catalog_watcher(config.catalog.path,
                                            lambda catalog: self.ingest.use_catalog(catalog))
        p = config.pricing
        self._prices: PriceWatcher | None = None
        self._watching_prices: asyncio.Task[None] | None = None
        if self.pricing is not None and p.path is not None and p.reload_interval > 0:
            self._prices = PriceWatcher(p.path, p.currency, p.builtin, self.pricing)
        self.ingest = Ingest(
            FieldMapper(mapping_rules(config)),
            MetricRules(custom_counters=config.mapping.counters),
            Estimation(agg.bytes_per_input_token, agg.tokens_per_output_chunk),
            self.commit,
            config.sources,
            catalog=Catalog.load(config.catalog.path) if config.catalog else None,
            limits=lim.settings(),
            on_ignored=self._ignored,
            inflight=InFlight(lim.max_inflight_bytes, lim.max_inflight_items,
                              config.commit.retry_after),
            horizon=horizon,
        )
        r = config.receivers
        a = config.auth
        credentials = Credentials(
            [t.get_secret_value() for t in a.tokens],
            a.gateway_secret.get_secret_value() if a.gateway_secret is not None else None,
            a.protect_health,
        )
        cert, key = config.tls.cert_file, config.tls.key_file
        retryable = self.telemetry.retryable if self.telemetry is not None else uncounted
        self.grpc = GrpcReceiver(
            self.ingest, r.host, r.grpc_port, min(r.max_body_bytes, r.grpc_max_message_bytes),
            reuse_port, credentials,
            tls.grpc_credentials(cert, key) if cert is not None and key is not None else None,
            retryable, (r.header_timeout, r.body_timeout),
        )  # fmt: skip
        app = build_app(self.ingest, self.ready, r.max_body_bytes, credentials, retryable,
                        Timeouts(r.idle_timeout, r.body_timeout))  # fmt: skip
        self.http = HttpReceiver(
            app, r.host, r.http_port, reuse_port,
            tls.server_context(cert, key) if cert is not None and key is not None else None,
            r.header_timeout,
        )  # fmt: skip
        self._stopped = False
        self._summaries: asyncio.Task[None] | None = None
        self.revision: str | None = None
        """Schema revision of the database at start (None when it did not answer)."""

    def _ignored(self, reasons: Mapping[str, int]) -> None:
        self.totals.add_ignored(reasons)
        if self.telemetry is not None:
            self.telemetry.ignored(reasons)

    def _metrics(
        self, listeners: list[CommitListener], remote: TelemetrySink | None
    ) -> tuple[MetricsExport | None, TelemetrySink | None]:
        """The metrics re-export: usage counters fed by commits, self-telemetry around the
        writer. Nothing when the ``metrics`` section is null or disabled."""
        if remote is not None:
            return None, remote
        export = metrics_export(self.config.metrics, listeners, self.config.pricing.currency)
        if export is None or not export.config.self_telemetry:
            return export, None
        return export, SelfTelemetry(export.meter)

    async def _retention_start(self, pruner: Pruner) -> None:
        """The recorded time zone checked (a change refuses to start), partitions ahead."""
        try:
            await check_timezone(self.engine, self.config.aggregation.timezone, _utcnow())
        except TimezoneChanged:
            raise
        except Exception as error:
            if self.config.database.migrate_on_start:
                raise
            logger.warning("aggregation.timezone not checked against the database: %s", error)
        try:
            await pruner.ensure_ahead()
        except Exception as error:  # the DEFAULT partition takes the rows meanwhile
            logger.warning("retention: partitions ahead not created: %s", error)

    async def ready(self) -> bool:
        return not self.commit.database_down and await self.sink.ping()

    async def start(self) -> None:
        """Sinks first, receivers last: schema, re-export, commit, background tasks, then the
        gRPC and HTTP receivers."""
        await self._start_schema()
        if self.metrics is not None:
            self.metrics.start()
        if self.telemetry is not None:
            self.telemetry.start()
        await self.commit.start()
        self._start_tasks()
        await self.http.start()
        await self.grpc.start()

    async def _start_schema(self) -> None:
        """Migrated (or checked) schema, then the time zone check and partitions ahead."""
        if self.gpustack:
            await self._start_gpustack()
        elif self.config.database.migrate_on_start:
            await migrate.upgrade(self.engine)
            self.revision = await migrate.current(self.engine)
        elif await self.sink.ping():
            self.revision = migrate.head()
        else:
            # Serve anyway: senders are answered retryable until the database answers.
            self.commit.database_unavailable("no answer at start, or schema not at head")
        if self.revision is not None and self.pruner is not None:
            await self._retention_start(self.pruner)

    def _start_tasks(self) -> None:
        """Catalog and price reloads, retention, the periodic summary line."""
        if self._watcher is not None and self.config.catalog is not None:
            interval = self.config.catalog.reload_interval
            self._watching = asyncio.create_task(self._watcher.run(interval))
        if self._prices is not None:
            interval = self.config.pricing.reload_interval
            self._watching_prices = asyncio.create_task(self._prices.run(interval))
        if self.pruner is not None and self.config.retention.interval > 0:
            self._retaining = asyncio.create_task(
                retain(self.pruner, self.config.retention.interval), name="tokenbridge-retention"
            )
        interval = self.config.log.summary_interval
        if interval > 0:
            self._summaries = asyncio.create_task(
                log_summaries(interval, self.totals.counts, lambda: self.commit.pending)
            )

    async def _start_gpustack(self) -> None:
        """GPUStack's schema checked (``SchemaError``: one line), tokenbridge's bookkeeping
        migrated, GPUStack's catalog read now and every ``database.catalog_refresh`` s."""
        async with self.engine.connect() as conn:
            await gpustack_migrate.check(conn)
        if self.config.database.migrate_on_start:
            await gpustack_migrate.upgrade(self.engine)
        def install(tables: catalog_source.CatalogRows) -> None:
            self.ingest.use_catalog(GpustackCatalog.from_tables(tables))

        self.revision = await gpustack_migrate.current(self.engine)
        install(await catalog_source.load(self.engine))
        self._watching = asyncio.create_task(catalog_source.refresh(
            self.engine, self.config.database.catalog_refresh, install))

    async def shutdown(self) -> None:
        """Stop intake, let requests in flight commit, close. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._summaries is not None:
            self._summaries.cancel()
        await self.grpc.shutdown()
        await self.http.shutdown()
        for task in (self._watching, self._watching_prices, self._retaining):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.commit.shutdown()
        if self.telemetry is not None:
            self.telemetry.shutdown()
        if self.metrics is not None:
            self.metrics.shutdown()
        for engine in (self.engine, self._retention_engine):
            with contextlib.suppress(TimeoutError):
                # Closing a pooled connection waits for the server's goodbye; a database that
                # stopped answering must not hold the exit (the OS closes the sockets).
                await asyncio.wait_for(engine.dispose(), self.config.database.connect_timeout)
        t = self.totals
        logger.info(
            "tokenbridge stopped after %.1fs: %d reports committed, %d duplicates skipped, "
            "%d rejected, %d transactions, %d pending left",
            time.monotonic() - t.started, t.committed, t.duplicates, t.rejects,
            t.transactions, self.commit.pending,
        )  # fmt: skip


def retention_policy(config: Config) -> Policy:
    r = config.retention
    return Policy(r.details_days, r.rejects_days, r.partition, r.partitions_ahead, r.archive_dir,
                  r.batch_rows, ZoneInfo(config.aggregation.timezone))  # fmt: skip


async def retain(pruner: Pruner, interval: float) -> None:
    """Every ``interval`` seconds from start: partitions ahead, then a prune run (skipped
    while another replica prunes). A failed run is logged and tried again next time."""
    while True:
        try:
            await pruner.ensure_ahead()
            await pruner.run()
        except Exception as error:
            logger.warning("retention run failed, kept everything it had not removed: %s", error)
        await asyncio.sleep(interval)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


async def serve_until_signalled(service: Service, ready: Callable[[Service], None]) -> None:
    """A serving process's life: start, tune the collector, call ``ready``, serve until
    SIGTERM or SIGINT, then shut down gracefully (what was accepted is committed)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    tune_gc()
    ready(service)
    try:
        await stop.wait()
    finally:
        await service.shutdown()
