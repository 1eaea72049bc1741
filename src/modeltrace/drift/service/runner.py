"""Lifecycle of ``modeltrace serve``: wire the parts, serve, shut down gracefully.

Start: open the aggregator on the store (which replays the inbox of
acknowledged requests), start the ingestion writer, the gRPC server and
uvicorn on pre-bound sockets, then report readiness. Stop (SIGTERM/SIGINT):
uvicorn stops accepting and finishes in-flight requests, the gRPC server gets a
grace period, the queue is drained (every queued request committed), the
aggregator checkpoints and closes. Exit code 0 after a graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette

from modeltrace.drift.service.app import ServiceState, build_app
from modeltrace.drift.service.auth import BearerAuth, load_token
from modeltrace.drift.service.config import HostPort, ServeConfig
from modeltrace.drift.service.grpc_server import start_grpc_server
from modeltrace.drift.service.ingest_queue import CommitStats, IngestQueue
from modeltrace.drift.service.logs import configure_logging
from modeltrace.drift.service.performance_routes import performance_routes
from modeltrace.drift.service.rca_routes import rca_routes
from modeltrace.drift.service.receiver import IngestResultLike, TraceReceiver
from modeltrace.drift.service.telemetry import MetricsPipeline, ServiceMetrics, service_meter

logger = logging.getLogger("modeltrace.service")

GRPC_GRACE_SECONDS = 10.0
DRAIN_TIMEOUT_SECONDS = 60.0


def _bind(address: HostPort) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address.host, address.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _open_aggregator(config: ServeConfig, pipeline: MetricsPipeline) -> Any:
    from modeltrace.drift.aggregator import DriftAggregator

    return DriftAggregator(
        store=config.store,
        pane_seconds=config.pane,
        window_seconds=config.window,
        meter_provider=pipeline.meter_provider,
        checkpoint_seconds=config.checkpoint_interval,
        multivariate_interval_seconds=config.multivariate_interval,
    )


class Service:
    """The running service; :meth:`run` blocks until it is stopped."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.pipeline = MetricsPipeline(config.export_endpoint, config.export_interval)
        self.aggregator = _open_aggregator(config, self.pipeline)
        self.queue: IngestQueue[IngestResultLike] = IngestQueue(
            self.aggregator.ingest_durable,
            max_bytes=config.queue_size,
            max_batch_bytes=max(config.max_body_size, 32 * 1024 * 1024),
            maintenance=self.aggregator.checkpoint,
            maintenance_interval=config.checkpoint_interval,
            on_commit=self._on_commit,
        )
        self.metrics = ServiceMetrics(
            service_meter(self.pipeline),
            queue_depth=lambda: self.queue.depth,
            queue_bytes=lambda: self.queue.queued_bytes,
        )
        self.receiver = TraceReceiver(self.queue, self.metrics)
        self.auth = (
            BearerAuth(load_token(config.auth_token_file))
            if config.auth_token_file is not None
            else None
        )
        from modeltrace.drift.aggregator import UnknownModelError
        from modeltrace.drift.reference import Reference, ReferenceFormatError

        self.state = ServiceState(
            backend=self.aggregator,
            receiver=self.receiver,
            metrics_pipeline=self.pipeline,
            parse_reference=Reference.from_dict,
            reference_errors=(ReferenceFormatError,),
            unknown_model_errors=(UnknownModelError,),
            max_body_size=config.max_body_size,
        )
        self.grpc_server: Any = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._stopped = False

    def _on_commit(self, stats: CommitStats) -> None:
        if stats.ok:
            self.metrics.record_commit(stats.seconds, stats.requests)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.state.ready = True
        logger.info(
            "modeltrace serve ready",
            extra={
                "http_port": self.http_port,
                "grpc_port": self.grpc_port if self.grpc_port is not None else "off",
                "store": self.config.store,
                "tls": self.config.tls,
                "auth": self.auth is not None,
            },
        )
        try:
            yield
        finally:
            self.state.ready = False
            await asyncio.get_running_loop().run_in_executor(None, self.stop)

    def stop(self) -> None:
        """Stop gRPC, drain and commit the queue, checkpoint, close (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        logger.info(
            "shutting down: draining the ingestion queue", extra={"queued": self.queue.depth}
        )
        if self.grpc_server is not None:
            self.grpc_server.stop(GRPC_GRACE_SECONDS).wait()
        drained = self.queue.close(DRAIN_TIMEOUT_SECONDS)
        if not drained:
            logger.error("ingestion queue not drained in time; the inbox replays the rest")
        try:
            self.aggregator.checkpoint()
        except Exception:
            logger.exception("final checkpoint failed; the inbox replays on restart")
        close = getattr(self.aggregator, "close", None)
        if callable(close):
            close()
        self.pipeline.shutdown()
        logger.info("stopped")

    def run(self) -> int:
        config = self.config
        http_socket = _bind(config.http)
        self.http_port = http_socket.getsockname()[1]
        self.queue.start()
        try:
            if config.grpc is not None:
                self.grpc_server, self.grpc_port = start_grpc_server(
                    self.receiver,
                    str(config.grpc),
                    max_message_size=config.max_body_size,
                    workers=config.grpc_workers,
                    auth=self.auth,
                    tls_cert=config.tls_cert,
                    tls_key=config.tls_key,
                )
            app = build_app(
                self.state,
                auth=self.auth,
                lifespan=self._lifespan,
                extra_routes=[*performance_routes(), *rca_routes()],
            )
            server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    log_config=None,
                    access_log=False,
                    lifespan="on",
                    ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
                    ssl_keyfile=str(config.tls_key) if config.tls_key else None,
                    timeout_graceful_shutdown=10,
                    timeout_keep_alive=30,
                    server_header=False,
                )
            )
            # uvicorn re-raises the signal that stopped it once it is done; by then
            # everything is drained, so that re-raise only has to end the process cleanly.
            previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
            try:
                server.run(sockets=[http_socket])
            finally:
                signal.signal(signal.SIGTERM, previous)
        finally:
            self.stop()
            http_socket.close()
        return 0


def run_service(config: ServeConfig) -> int:
    configure_logging(config.log_level)
    return Service(config).run()
