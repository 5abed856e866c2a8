"""The optional catalog: the seed's validation and name snapshots."""

from __future__ import annotations

import pytest

from collector.aggregation.rules import resolve_tokens
from collector.mapping.catalog import Catalog, CatalogFile
from collector.mapping.values import BadValue
from collector.model import Source, UsageReport

CATALOG = Catalog(CatalogFile.model_validate({
    "models": [{"id": 1, "name": "qwen3", "cluster_id": 4},
               {"id": 2, "name": "bge-m3", "categories": ["embedding"]}],
    "providers": [{"id": 9, "name": "deepseek", "type": "openai", "models": ["ds-chat"]}],
    "users": [{"id": 7, "name": "alice"}],
    "api_keys": [{"access_key": "ak-1", "id": 30, "name": "ci key", "is_custom": True}],
    "routes": [{"id": 5, "name": "default"}],
    "clusters": [{"id": 4, "name": "gpu-a"}],
}))  # fmt: skip


def report(**fields: object) -> UsageReport:
    base: dict[str, object] = {"model": "qwen3", "source": Source.GATEWAY, "dedup_key": "k",
                               "received_at": 1, "input_token": 1}  # fmt: skip
    return UsageReport(**{**base, **fields})


def test_snapshot_takes_the_names_of_the_day() -> None:
    out = CATALOG.apply(report(model_id=1, user_id="7", access_key="ak-1", model_route_id=5))
    assert (out.user_name, out.api_key_id, out.api_key_name, out.api_key_is_custom) == (
        "alice", 30, "ci key", True)  # fmt: skip
    assert (out.model_route_name, out.cluster_id, out.cluster_name) == ("default", 4, "gpu-a")


def test_a_report_without_ids_is_matched_by_model_name() -> None:
    assert CATALOG.apply(report()).model_id == 1
    with pytest.raises(BadValue, match="no model named 'gpt-4o'"):
        CATALOG.apply(report(model="gpt-4o"))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"model_id": 3}, "model id 3 not found"),
        ({"model_id": 2}, "model id 2 is 'bge-m3', not 'qwen3'"),
        ({"provider_id": 8}, "provider id 8 not found"),
        ({"provider_id": 9}, "provider id 9 does not serve 'qwen3'"),
        ({"model_id": 1, "user_id": "8"}, "user '8' not found"),
    ],
)
def test_the_seed_validation_rejects_with_a_reason(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(BadValue, match=reason):
        CATALOG.apply(report(**fields))


def test_provider_snapshot_and_embedding_models_resolve_from_total() -> None:
    out = CATALOG.apply(report(model="ds-chat", provider_id=9))
    assert (out.provider_name, out.provider_type, out.model_id) == ("deepseek", "openai", None)
    embedding = CATALOG.apply(report(model="bge-m3", model_id=2, input_token=0, total_token=40))
    assert resolve_tokens(embedding) == (40, 0)
