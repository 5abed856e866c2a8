"""GPUStack 2.3's validation and snapshots, over rows read from its own catalog tables.

Pure: the rows come from ``exporters.sql.gpustack.catalog_source`` (``database.layout:
gpustack``), which reads models, model_routes, model_providers, principals, api_keys and
clusters every few seconds; ``from_tables`` builds a new ``GpustackCatalog`` from them.
``apply`` keeps GPUStack's rules (``store_usage_metrics``: ``_validate_usage_metric`` and
``_build_metric_snapshot``):

- a report needs a ``model_id`` or a ``provider_id`` (tokenbridge also takes a report with
  neither when exactly one model has its name: GPUStack drops it);
- a model id must exist and carry the report's name, or the report's route must be a LoRA
  route of that model: ``model="qwen3:sql-lora"``, ``model_route_id=12`` where route 12 is
  named ``qwen3:sql-lora`` with ``created_model_id`` = the model's id. The row then stores
  ``model_name="qwen3"`` and ``model_route_name="qwen3:sql-lora"``;
- a provider id must exist and list the model; a user id must be a principal;
- snapshots: names of the user, key, route, provider and cluster of the day; the owner is the
  model's (else the provider's, else the route's); the consumer is the key's owner, else
  ``int(organization_id)`` when there is no key, else the caller's own USER principal.

Where GPUStack drops a report silently, ``apply`` raises ``BadValue`` with the reason: the
report is kept in the reject table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.mapping.values import BadValue
from collector.model import UsageReport

EMBEDDING_CATEGORIES = frozenset({"embedding", "reranker"})


@dataclass(frozen=True, slots=True)
class GsModel:
    name: str
    categories: frozenset[str] = frozenset()
    cluster_id: int | None = None
    owner_principal_id: int | None = None


@dataclass(frozen=True, slots=True)
class GsRoute:
    name: str
    created_model_id: int | None = None
    owner_principal_id: int | None = None


@dataclass(frozen=True, slots=True)
class GsProvider:
    name: str
    type: str | None = None
    models: frozenset[str] = frozenset()
    owner_principal_id: int | None = None


@dataclass(frozen=True, slots=True)
class GsPrincipal:
    name: str | None
    kind: str
    """Lowercase ``PrincipalType`` value: ``user``, ``org``, ``group``, ``system``."""


@dataclass(frozen=True, slots=True)
class GsApiKey:
    id: int
    name: str
    is_custom: bool = False
    owner_principal_id: int | None = None


@dataclass(frozen=True)
class GpustackCatalog:
    models: dict[int, GsModel] = field(default_factory=dict)
    routes: dict[int, GsRoute] = field(default_factory=dict)
    providers: dict[int, GsProvider] = field(default_factory=dict)
    principals: dict[int, GsPrincipal] = field(default_factory=dict)
    api_keys: dict[str, GsApiKey] = field(default_factory=dict)
    clusters: dict[int, str] = field(default_factory=dict)
    _by_name: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for model_id, model in self.models.items():
            self._by_name.setdefault(model.name, []).append(model_id)

    @classmethod
    def from_tables(cls, tables: Mapping[str, Iterable[Mapping[str, Any]]]) -> GpustackCatalog:
        """From rows of GPUStack's tables (``exporters.sql.gpustack.catalog_source``)."""
        def rows(name: str) -> Iterable[Mapping[str, Any]]:
            return tables.get(name, ())

        return cls(
            models={r["id"]: GsModel(r["name"], frozenset(_texts(r["categories"])),
                                     r["cluster_id"], r["owner_principal_id"])
                    for r in rows("models")},
            routes={r["id"]: GsRoute(r["name"], r["created_model_id"], r["owner_principal_id"])
                    for r in rows("model_routes")},
            providers={r["id"]: GsProvider(r["name"], _provider_type(r["config"]),
                                           frozenset(_model_names(r["models"])),
                                           r["owner_principal_id"])
                       for r in rows("model_providers")},
            principals={r["id"]: GsPrincipal(r["name"], str(r["kind"]).lower())
                        for r in rows("principals")},
            api_keys={r["access_key"]: GsApiKey(r["id"], r["name"], bool(r["is_custom"]),
                                                r["owner_principal_id"])
                      for r in rows("api_keys")},
            clusters={r["id"]: r["name"] for r in rows("clusters")},
        )  # fmt: skip

    def apply(self, report: UsageReport) -> UsageReport:
        """The report checked as GPUStack 2.3 checks it, with its snapshots. Raises
        ``BadValue`` with the reason GPUStack would have dropped it for."""
        user_id = _principal_id(report.user_id)
        model_id = report.model_id
        if model_id is None and report.provider_id is None:
            model_id = self._model_by_name(report.model)
        model = self._check_model(model_id, report)
        provider = self._check_provider(report.provider_id, report.model)
        user = self.principals.get(user_id) if user_id is not None else None
        if user_id is not None and user is None:
            raise BadValue(f"gpustack: user {report.user_id!r} not found in principals")
        key = self.api_keys.get(report.access_key) if report.access_key is not None else None
        route_id = report.model_route_id
        route = self.routes.get(route_id) if route_id is not None else None
        owner = model.owner_principal_id if model is not None else None
        if model is None and provider is not None:
            owner = provider.owner_principal_id
        if owner is None and route is not None:
            owner = route.owner_principal_id
        consumer = self._consumer(key, report.organization_id, user_id, user)
        who = self.principals.get(consumer) if consumer is not None else None
        cluster_id = report.cluster_id
        if cluster_id is None and model is not None:
            cluster_id = model.cluster_id
        cluster_name = None
        if model is not None and model.cluster_id is not None:
            cluster_name = self.clusters.get(model.cluster_id)
        return report._replace(
            model=model.name if model is not None else report.model,
            model_id=model_id,
            provider_name=provider.name if provider is not None else report.provider_name,
            provider_type=provider.type if provider is not None else report.provider_type,
            user_name=user.name if user is not None else None,
            api_key_id=key.id if key is not None else None,
            api_key_name=key.name if key is not None else None,
            api_key_is_custom=key.is_custom if key is not None else None,
            model_route_name=route.name if route is not None else None,
            cluster_id=cluster_id,
            cluster_name=cluster_name,
            owner_principal_id=owner,
            consumer_principal_id=consumer,
            consumer_name=who.name if who is not None else None,
            consumer_principal_kind=who.kind if who is not None else None,
            prompt_from_total=bool(model is not None and EMBEDDING_CATEGORIES & model.categories),
        )

    def _model_by_name(self, name: str) -> int:
        matches = self._by_name.get(name, [])
        if len(matches) != 1:
            found = "no" if not matches else "several"
            raise BadValue(f"gpustack: no model_id or provider_id, and {found} model named "
                           f"{name!r}")  # fmt: skip
        return matches[0]

    def _check_model(self, model_id: int | None, report: UsageReport) -> GsModel | None:
        if model_id is None:
            return None
        model = self.models.get(model_id)
        if model is None:
            raise BadValue(f"gpustack: model id {model_id} not found")
        if model.name != report.model:
            route = self.routes.get(report.model_route_id or -1)
            if route is None or route.name != report.model or route.created_model_id != model_id:
                raise BadValue(f"gpustack: model id {model_id} is {model.name!r}, not "
                               f"{report.model!r}, and no LoRA route of it has that name "
                               f"(model_route_id {report.model_route_id})")  # fmt: skip
        return model

    def _check_provider(self, provider_id: int | None, name: str) -> GsProvider | None:
        if provider_id is None:
            return None
        provider = self.providers.get(provider_id)
        if provider is None:
            raise BadValue(f"gpustack: provider id {provider_id} not found")
        if name not in provider.models:
            raise BadValue(f"gpustack: provider id {provider_id} does not serve {name!r}")
        return provider

    @staticmethod
    def _consumer(
        key: GsApiKey | None, organization_id: str | None, user_id: int | None,
        user: GsPrincipal | None,
    ) -> int | None:  # fmt: skip
        """The key's owner; else, with no key, the organization header; else the caller's
        own USER principal (SYSTEM callers stay unattributed)."""
        if key is not None and key.owner_principal_id is not None:
            return key.owner_principal_id
        if key is None and organization_id:
            try:
                return int(organization_id)
            except ValueError:
                pass
        if user is not None and user.kind == "user":
            return user_id
        return None


def _principal_id(user_id: str | None) -> int | None:
    """GPUStack's user ids are integers (principal ids)."""
    if user_id is None:
        return None
    try:
        return int(user_id)
    except ValueError:
        raise BadValue(f"gpustack: user {user_id!r} not found in principals") from None


def _texts(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _model_names(value: Any) -> list[str]:
    """Provider models: a JSON list of objects with a ``name`` (or of plain names)."""
    if not isinstance(value, list):
        return []
    names = [v.get("name") if isinstance(v, dict) else v for v in value]
    return [n for n in names if isinstance(n, str)]


def _provider_type(config: Any) -> str | None:
    kind = config.get("type") if isinstance(config, dict) else None
    return kind if isinstance(kind, str) else None
