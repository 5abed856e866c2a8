"""Rows of the GPUStack layout: GPUStack's types, operation names and NULLs, summed on its
database merge key."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from collector.model import Operation, Source, UsageReport
from exporters.sql.gpustack.rows import MergeKey, detail_row, merge_key, rollups

AT = 1_700_000_000_000  # 2023-11-14T22:13:20Z, 2023-11-15 in Asia/Shanghai
UTC = ZoneInfo("UTC")


def report(key: str, **fields: Any) -> UsageReport:
    return UsageReport(model="qwen3", source=Source.GATEWAY, dedup_key=key, received_at=AT,
                       input_token=10, output_token=2, completed_at=AT, model_id=1,
                       **fields)  # fmt: skip


def test_merge_key_keeps_nulls_and_stores_operation_names() -> None:
    assert merge_key(report("a", user_id="7"), UTC) == MergeKey(
        1, 7, None, None, None, "qwen3", None, None, None, None, date(2023, 11, 14))
    shanghai = ZoneInfo("Asia/Shanghai")
    chat = merge_key(report("b", operation=Operation.AUDIO_TRANSCRIPTION), shanghai)
    assert (chat.operation, chat.user_id, chat.date) == ("AUDIO_TRANSCRIPTION", None,
                                                         date(2023, 11, 15))  # fmt: skip


def test_rollups_sum_on_the_merge_key_and_keep_the_first_snapshot() -> None:
    rows = rollups([
        report("a", user_id="7", consumer_principal_id=7, model_route_id=5,
               model_route_name="qwen3", organization_id="1", input_cached_token=4),
        report("b", user_id="7", consumer_principal_id=7, model_route_id=5,
               model_route_name="renamed", organization_id="2"),
        report("c", user_id="7", consumer_principal_id=8, model_route_id=5),
    ], UTC)  # fmt: skip
    summed = sorted((r.key.consumer_principal_id, r.sums, r.snapshot["model_route_name"])
                    for r in rows.values())  # fmt: skip
    assert summed == [(7, [20, 4, 4, 2], "qwen3"), (8, [10, 2, 0, 1], None)]


def test_detail_row_is_gpustacks_audit_row() -> None:
    row = detail_row(report("a", started_at=0, request_id="r" * 256, completed=False,
                            operation=Operation.CHAT_COMPLETION), UTC)  # fmt: skip
    assert (row["started_at"], row["completed_at"], row["request_id"]) == (
        None, datetime(2023, 11, 14, 22, 13, 20), None)
    assert (row["operation"], row["completed"], row["date"]) == (
        "CHAT_COMPLETION", False, date(2023, 11, 14))
