"""The optional catalog: GPUStack's validation and name snapshots, without GPUStack.

A YAML file lists models, providers, users, API keys, routes and clusters. With a catalog,
each report is checked as the seed checks it (a report naming neither a model id nor a provider
id is matched to a catalog model by name; an unknown or mismatched id rejects it) and gets the
names of the day (user, API key, route, cluster, provider). A rejected report is kept in the
reject table with its reason, never dropped. Without a catalog, names come from attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from collector.mapping.values import BadValue
from collector.model import UsageReport
from collector.reload import FileWatcher

EMBEDDING_CATEGORIES = frozenset({"embedding", "reranker"})

class ReportCatalog(Protocol):
    """What ingest asks of a catalog: this YAML one, or GPUStack's tables
    (``collector.mapping.gpustack_catalog``)."""

    def apply(self, report: UsageReport) -> UsageReport:
        """The report checked, with its name snapshot. Raises ``BadValue``."""
        ...


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogModel(_Entry):
    id: int
    name: str
    categories: list[str] = []
    cluster_id: int | None = None


class CatalogProvider(_Entry):
    id: int
    name: str
    type: str | None = None
    models: list[str] = []


class CatalogUser(_Entry):
    id: str | int
    name: str


class CatalogApiKey(_Entry):
    access_key: str
    id: int
    name: str
    is_custom: bool = False


class CatalogNamed(_Entry):
    id: int
    name: str


class CatalogFile(_Entry):
    models: list[CatalogModel] = []
    providers: list[CatalogProvider] = []
    users: list[CatalogUser] = []
    api_keys: list[CatalogApiKey] = []
    routes: list[CatalogNamed] = []
    clusters: list[CatalogNamed] = []


class Catalog:
    def __init__(self, data: CatalogFile) -> None:
        self.models = {m.id: m for m in data.models}
        self._models_by_name: dict[str, list[CatalogModel]] = {}
        for model in data.models:
            self._models_by_name.setdefault(model.name, []).append(model)
        self.providers = {p.id: p for p in data.providers}
        self.users = {str(u.id): u for u in data.users}
        self.api_keys = {k.access_key: k for k in data.api_keys}
        self.routes = {r.id: r.name for r in data.routes}
        self.clusters = {c.id: c.name for c in data.clusters}

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        try:
            raw: Any = yaml.safe_load(Path(path).read_text()) or {}
            return cls(CatalogFile.model_validate(raw))
        except OSError as exc:
            raise ValueError(f"catalog {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ValueError(f"catalog {path}: YAML syntax error{where}") from None
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors())  # fmt: skip
            raise ValueError(f"catalog {path}: {problems}") from None

    def apply(self, report: UsageReport) -> UsageReport:
        """The report checked and with its name snapshot. Raises ``BadValue``."""
        model_id = report.model_id
        if model_id is None and report.provider_id is None:
            model_id = self._model_by_name(report.model)
        model = self._check_model(model_id, report.model)
        provider = self._check_provider(report.provider_id, report.model)
        if report.user_id is not None and report.user_id not in self.users:
            raise BadValue(f"catalog: user {report.user_id!r} not found")
        user = self.users.get(report.user_id) if report.user_id is not None else None
        key = self.api_keys.get(report.access_key) if report.access_key is not None else None
        cluster_id = report.cluster_id
        if cluster_id is None and model is not None:
            cluster_id = model.cluster_id
        return report._replace(
            model_id=model_id,
            provider_name=provider.name if provider else report.provider_name,
            provider_type=provider.type if provider and provider.type else report.provider_type,
            user_name=user.name if user else report.user_name,
            api_key_id=key.id if key else report.api_key_id,
            api_key_name=key.name if key else report.api_key_name,
            api_key_is_custom=key.is_custom if key else report.api_key_is_custom,
            model_route_name=self.routes.get(report.model_route_id or -1, report.model_route_name),
            cluster_id=cluster_id,
            cluster_name=self.clusters.get(cluster_id if cluster_id is not None else -1),
            prompt_from_total=bool(model and EMBEDDING_CATEGORIES & set(model.categories)),
        )

    def _model_by_name(self, name: str) -> int:
        matches = self._models_by_name.get(name, [])
        if len(matches) != 1:
            found = "no" if not matches else "several"
            raise BadValue(f"catalog: no model_id or provider_id, and {found} model named {name!r}")
        return matches[0].id

    def _check_model(self, model_id: int | None, name: str) -> CatalogModel | None:
        if model_id is None:
            return None
        model = self.models.get(model_id)
        if model is None:
            raise BadValue(f"catalog: model id {model_id} not found")
        if model.name != name:
            raise BadValue(f"catalog: model id {model_id} is {model.name!r}, not {name!r}")
        return model

    def _check_provider(self, provider_id: int | None, name: str) -> CatalogProvider | None:
        if provider_id is None:
            return None
        provider = self.providers.get(provider_id)
        if provider is None:
            raise BadValue(f"catalog: provider id {provider_id} not found")
        if name not in provider.models:
            raise BadValue(f"catalog: provider id {provider_id} does not serve {name!r}")
        return provider


def catalog_watcher(path: str | Path, install: Callable[[Catalog], None]) -> FileWatcher[Catalog]:
    """Reloads the catalog file when it changes, so users, keys and models added in GPUStack
    are known without a restart (until then their reports are rejected: unknown user)."""
    return FileWatcher(path, Catalog.load, install, "catalog", lambda c: (
        f"{len(c.models)} models, {len(c.users)} users, {len(c.api_keys)} api keys"))

