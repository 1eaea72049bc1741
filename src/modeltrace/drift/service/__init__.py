"""The drift aggregator service behind ``modeltrace serve``.

Modules: ``config`` (flags/env/config file), ``otlp_codec`` (OTLP protobuf and
JSON encodings), ``body_reader`` (size-limited bodies, bounded gzip),
``ingest_queue`` (bounded queue, group-commit writer), ``receiver`` (what
HTTP and gRPC exports share), ``app`` (Starlette routes), ``grpc_server``
(OTLP/gRPC), ``auth`` (bearer token), ``telemetry`` (/metrics and OTLP push,
self-metrics), ``logs`` (JSON logs), ``runner`` (lifecycle).
"""
