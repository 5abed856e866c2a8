"""The settings of the OpenTelemetry Collector components our collector configs use, as the
components document them at Collector v0.165 (collector core and contrib READMEs and config
structs): enough to catch a misspelt or retired key without a Collector binary.

A schema is a set of leaf keys, or a dict: key -> schema of the value (``ANY``: free form,
e.g. OTTL statements)."""

from __future__ import annotations

from typing import Any

ANY: dict[str, Any] = {}
Schema = dict[str, Any]

RETRY: Schema = {k: None for k in ("enabled", "initial_interval", "randomization_factor",
                                   "multiplier", "max_interval", "max_elapsed_time")}  # fmt: skip
QUEUE: Schema = {
    **{k: None for k in ("enabled", "num_consumers", "wait_for_result", "block_on_overflow",
                         "sizer", "queue_size", "storage")},
    "batch": {k: None for k in ("flush_timeout", "min_size", "max_size", "sizer")},
}  # fmt: skip
TLS: Schema = {k: None for k in ("insecure", "insecure_skip_verify", "ca_file", "cert_file",
                                 "key_file", "server_name_override", "min_version")}
OTLP_EXPORTER: Schema = {
    **{k: None for k in ("endpoint", "compression", "timeout", "headers", "balancer_name",
                         "write_buffer_size", "wait_for_ready", "authority")},
    "tls": TLS, "retry_on_failure": RETRY, "sending_queue": QUEUE, "keepalive": ANY, "auth": ANY,
}  # fmt: skip
SERVER: Schema = {"endpoint": None, "tls": TLS, "max_recv_msg_size_mib": None, "auth": ANY,
                  "cors": ANY, "include_metadata": None}  # fmt: skip

COMPONENTS: dict[str, dict[str, Schema]] = {
    "extensions": {
        "health_check": {"endpoint": None, "path": None, "check_collector_pipeline": ANY},
        "file_storage": {
            **{k: None for k in ("directory", "create_directory", "directory_permissions",
                                 "timeout", "fsync")},
            "compaction": {k: None for k in ("directory", "on_start", "on_rebound",
                                             "rebound_needed_threshold_mib",
                                             "rebound_trigger_threshold_mib", "check_interval",
                                             "max_transaction_size", "cleanup_on_start")},
        },
    },
    "receivers": {"otlp": {"protocols": {"grpc": SERVER, "http": SERVER}}},
    "processors": {
        "memory_limiter": {k: None for k in ("check_interval", "limit_mib", "spike_limit_mib",
                                             "limit_percentage", "spike_limit_percentage")},
        "transform": {"error_mode": None, "trace_statements": ANY, "metric_statements": ANY,
                      "log_statements": ANY, "flatten_data": None},
    },
    "exporters": {
        "otlp": OTLP_EXPORTER,
        "loadbalancing": {
            "routing_key": None, "timeout": None, "retry_on_failure": RETRY,
            "sending_queue": QUEUE, "routing_attributes": ANY,
            "protocol": {"otlp": OTLP_EXPORTER},
            "resolver": {"static": ANY, "dns": {k: None for k in ("hostname", "port",
                                                                  "interval", "timeout")},
                         "k8s": ANY, "aws_cloud_map": ANY},
        },
    },
}  # fmt: skip


def check(schema: Schema, settings: Any, where: str) -> None:
    """Fail with the dotted path of the first key ``schema`` does not define."""
    if schema is ANY or not isinstance(settings, dict):
        return
    for key, value in settings.items():
        assert key in schema, f"{where}.{key}: not a setting of this component"
        if isinstance(schema[key], dict):
            check(schema[key], value, f"{where}.{key}")
    if "sizer" in settings:
        assert settings["sizer"] in ("requests", "items", "bytes"), f"{where}.sizer"
