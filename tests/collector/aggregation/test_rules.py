"""The seed's rules, case by case (key, estimation, token resolution, day and time zone)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from collector.aggregation.rules import (
    Estimation,
    RollupKey,
    estimate,
    resolve_tokens,
    rollup_key,
    usage_date,
)
from collector.model import Operation, Source, UsageReport
from exporters.sql.rows import RowBuilder, rollups

UTC = UTC
NOW = 1_764_288_000_000  # 2025-11-28T00:00:00Z


def report(**fields: object) -> UsageReport:
    base: dict[str, object] = {
        "model": "m", "source": Source.GATEWAY, "dedup_key": "k", "received_at": NOW,
    }  # fmt: skip
    base.update(fields)
    return UsageReport(**base)


def test_key_with_all_parts_absent_keeps_only_model_and_day() -> None:
    assert rollup_key(report(), UTC) == RollupKey(
        None, None, "m", None, None, None, date(2025, 11, 28), ()
    )


def test_key_keeps_zero_none_and_empty_distinct() -> None:
    keys = {
        rollup_key(report(user_id=None), UTC),
        rollup_key(report(user_id=""), UTC),
        rollup_key(report(user_id="0"), UTC),
        rollup_key(report(model_id=0), UTC),
    }
    assert len(keys) == 4


def test_dotted_names_do_not_collide() -> None:
    # The seed's "a.b" + "c" and "a" + "b.c" joined to the same string key.
    first = rollup_key(report(model="a.b", user_id="c"), UTC)
    second = rollup_key(report(model="a", user_id="b.c"), UTC)
    assert first != second


def test_extra_dimensions_join_the_key() -> None:
    a = rollup_key(report(model_route_id=1), UTC, ("model_route_id",))
    b = rollup_key(report(model_route_id=2), UTC, ("model_route_id",))
    assert a != b and a.extra == (1,) and b.extra == (2,)
    assert rollup_key(report(model_route_id=1), UTC) == rollup_key(report(model_route_id=2), UTC)


def test_reports_of_one_key_are_summed_and_other_keys_stay_apart() -> None:
    now = datetime(2025, 11, 28, tzinfo=UTC)
    rows = rollups(
        [
            report(input_token=10, output_token=2, input_cached_token=1, dedup_key="a"),
            report(input_token=5, output_token=3, dedup_key="b", provider_name="later"),
            report(input_token=7, operation=Operation.EMBEDDING, dedup_key="c"),
            report(input_token=1, completed_at=NOW + 86_400_000, dedup_key="d"),
        ],
        UTC, (), now,
    )  # fmt: skip
    summary = sorted(
        (r["operation"] or "", r["date"].isoformat(), r["prompt_token_count"],
         r["completion_token_count"], r["prompt_cached_token_count"], r["request_count"])
        for r in rows
    )  # fmt: skip
    assert summary == [
        ("", "2025-11-28", 15, 5, 1, 2),
        ("", "2025-11-29", 1, 0, 0, 1),
        ("embedding", "2025-11-28", 7, 0, 0, 1),
    ]
    first = next(r for r in rows if r["prompt_token_count"] == 15)
    assert first["provider_name"] is None  # non-summed fields come from the first report


def test_estimation_fills_input_output_and_raises_total() -> None:
    out = estimate(
        report(completed=False, request_content_bytes=400, output_chunk_count=10),
        Estimation(bytes_per_input_token=4, tokens_per_output_chunk=2),
    )
    assert (out.input_token, out.output_token, out.total_token, out.estimated) == (
        100, 20, 120, True,
    )  # fmt: skip


def test_estimation_keeps_a_partial_input_token() -> None:
    out = estimate(
        report(completed=False, input_token=7, request_content_bytes=400, output_chunk_count=3),
        Estimation(),
    )
    assert (out.input_token, out.output_token, out.total_token) == (7, 3, 10)


def test_estimation_clamps_to_at_least_one_token() -> None:
    out = estimate(report(completed=False, request_content_bytes=3), Estimation())
    assert out.input_token == 1
    ratios = Estimation(bytes_per_input_token=0, tokens_per_output_chunk=-5)
    assert (ratios.bytes_per_input_token, ratios.tokens_per_output_chunk) == (1, 1)


def test_completed_report_is_not_estimated() -> None:
    original = report(completed=True, request_content_bytes=400, output_chunk_count=10)
    out = estimate(original, Estimation())
    assert out is original
    assert (out.input_token, out.output_token, out.total_token, out.estimated) == (0, 0, 0, False)


def test_total_only_is_raised_without_marking_an_estimate() -> None:
    out = estimate(report(completed=False, input_token=4, output_token=6), Estimation())
    assert (out.total_token, out.estimated) == (10, False)


def test_embedding_and_rerank_take_prompt_from_total() -> None:
    for operation in (Operation.EMBEDDING, Operation.RERANK):
        assert resolve_tokens(report(operation=operation, total_token=50)) == (50, 0)
        assert resolve_tokens(
            report(operation=operation, input_token=10, output_token=5, total_token=40)
        ) == (35, 5)
    assert resolve_tokens(report(operation=Operation.CHAT_COMPLETION, total_token=50)) == (0, 0)
    assert resolve_tokens(report(operation=Operation.EMBEDDING, input_token=9, total_token=9)) == (
        9, 0,
    )  # fmt: skip


def test_day_comes_from_completed_then_started_then_received() -> None:
    day1, day2, day3 = 1_700_000_000_000, 1_700_100_000_000, 1_700_200_000_000
    both = report(started_at=day1, completed_at=day2, received_at=day3)
    assert usage_date(both, UTC) == date(2023, 11, 16)
    assert usage_date(report(started_at=day1, received_at=day3), UTC) == date(2023, 11, 14)
    assert usage_date(report(received_at=day3), UTC) == date(2023, 11, 17)
    absent = report(started_at=0, completed_at=-1, received_at=day3)
    assert usage_date(absent, UTC) == date(2023, 11, 17)


def test_stream_crossing_midnight_lands_on_the_day_it_ended() -> None:
    midnight = 1_700_006_400_000  # 2023-11-15T00:00:00Z
    before = report(started_at=midnight - 5_000, completed_at=midnight - 1)
    after = report(started_at=midnight - 5_000, completed_at=midnight)
    assert usage_date(before, UTC) == date(2023, 11, 14)
    assert usage_date(after, UTC) == date(2023, 11, 15)


def test_day_in_a_configured_time_zone() -> None:
    stamp = report(completed_at=1_700_000_000_000)
    assert usage_date(stamp, UTC) == date(2023, 11, 14)
    assert usage_date(stamp, ZoneInfo("Asia/Shanghai")) == date(2023, 11, 15)
    key = rollup_key(stamp, ZoneInfo("Asia/Shanghai"))
    assert key.date == date(2023, 11, 15)


def test_row_days_match_the_rule_in_every_zone() -> None:
    stamps = [0, -1, 1_700_000_000_000, 1_700_006_399_999, 1_700_006_400_000,
              1_711_846_800_000, 2**63 // 10**6]  # fmt: skip
    for zone in (UTC, ZoneInfo("UTC"), ZoneInfo("Asia/Shanghai"), ZoneInfo("Asia/Kathmandu"),
                 ZoneInfo("America/St_Johns"), ZoneInfo("Europe/Berlin")):  # fmt: skip
        rows = RowBuilder(zone)
        for ms in stamps:
            expected = usage_date(report(received_at=ms, completed_at=ms), zone)
            assert rows.day(ms) == expected, (zone, ms)
            staged = rows.staged(report(received_at=ms, completed_at=ms))
            assert staged[0] == expected, (zone, ms)
