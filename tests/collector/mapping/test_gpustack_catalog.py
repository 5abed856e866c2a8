"""GPUStack 2.3's validation and snapshots over catalog rows (no database: the rows as
``exporters.sql.gpustack.catalog_source`` reads them). The ``gpustack`` tests check the same
rules against GPUStack's own collector."""

from __future__ import annotations

from typing import Any

import pytest

from collector.mapping.gpustack_catalog import (
    GpustackCatalog,
    GsApiKey,
    GsModel,
    GsPrincipal,
    GsProvider,
    GsRoute,
)
from collector.mapping.values import BadValue
from collector.model import Source, UsageReport

CATALOG = GpustackCatalog(
    models={1: GsModel("qwen3", frozenset({"llm"}), 4, 1),
            2: GsModel("bge-m3", frozenset({"embedding"}), 4, 1)},
    routes={5: GsRoute("qwen3", 1, 1), 6: GsRoute("qwen3:sql-lora", 1, 1),
            7: GsRoute("ds", None, 9)},
    providers={3: GsProvider("deepseek", "deepseek", frozenset({"ds-chat"}), 8)},
    principals={1: GsPrincipal("default", "org"), 7: GsPrincipal("alice", "user"),
                20: GsPrincipal("acme", "org"), 30: GsPrincipal("worker", "system")},
    api_keys={"ak-org": GsApiKey(40, "ci key", False, 20), "ak-all": GsApiKey(41, "all", True)},
    clusters={4: "gpu-a"},
)  # fmt: skip


def report(**fields: Any) -> UsageReport:
    fields.setdefault("model", "qwen3")
    fields.setdefault("input_token", 10)
    return UsageReport(source=Source.GATEWAY, dedup_key="k", received_at=1, **fields)


def test_lora_name_is_accepted_through_its_route_and_stored_under_the_base_model() -> None:
    out = CATALOG.apply(report(model="qwen3:sql-lora", model_id=1, model_route_id=6, user_id="7"))
    assert (out.model, out.model_route_name, out.cluster_name, out.owner_principal_id) == (
        "qwen3", "qwen3:sql-lora", "gpu-a", 1)
    with pytest.raises(BadValue, match="no LoRA route of it has that name"):
        CATALOG.apply(report(model="qwen3:sql-lora", model_id=1, model_route_id=5))
    with pytest.raises(BadValue, match="model id 9 not found"):
        CATALOG.apply(report(model_id=9))


def test_consumer_is_the_key_owner_else_the_organization_else_the_user() -> None:
    keyed = CATALOG.apply(report(model_id=1, user_id="7", access_key="ak-org",
                                 organization_id="1"))  # fmt: skip
    assert (keyed.consumer_principal_id, keyed.consumer_name, keyed.consumer_principal_kind,
            keyed.api_key_id, keyed.api_key_name) == (20, "acme", "org", 40, "ci key")
    # A key without owner ignores the header: the caller's own principal is billed.
    unowned = CATALOG.apply(report(model_id=1, user_id="7", access_key="ak-all",
                                   organization_id="20"))  # fmt: skip
    assert (unowned.consumer_principal_id, unowned.api_key_is_custom) == (7, True)
    header = CATALOG.apply(report(model_id=1, user_id="7", organization_id="20"))
    assert (header.consumer_principal_id, header.consumer_name) == (20, "acme")
    system = CATALOG.apply(report(model_id=1, user_id="30"))
    assert (system.consumer_principal_id, system.user_name) == (None, "worker")
    unknown_key = CATALOG.apply(report(model_id=1, access_key="ak-gone"))
    assert (unknown_key.access_key, unknown_key.api_key_id, unknown_key.consumer_principal_id) == (
        "ak-gone", None, None)


def test_provider_models_owner_and_names() -> None:
    out = CATALOG.apply(report(model="ds-chat", provider_id=3, model_route_id=7))
    assert (out.model_id, out.provider_name, out.provider_type, out.owner_principal_id,
            out.model_route_name, out.cluster_name) == (None, "deepseek", "deepseek", 8, "ds", None)
    with pytest.raises(BadValue, match="provider id 3 does not serve 'qwen3'"):
        CATALOG.apply(report(provider_id=3))


def test_unknown_or_non_integer_users_are_rejected_with_the_reason() -> None:
    for user in ("99", "alice"):
        with pytest.raises(BadValue, match=f"user '{user}' not found in principals"):
            CATALOG.apply(report(model_id=1, user_id=user))


def test_no_ids_match_the_one_model_of_that_name_and_embeddings_take_the_total() -> None:
    out = CATALOG.apply(report(model="bge-m3", input_token=0, total_token=64))
    assert (out.model_id, out.prompt_from_total, out.model_route_name) == (2, True, None)
    with pytest.raises(BadValue, match="no model named 'nope'"):
        CATALOG.apply(report(model="nope"))
