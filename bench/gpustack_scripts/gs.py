"""GPUStack 2.3 driven through its own code, for tokenbridge's tests and bench.

Run with the python of the GPUStack test environment (never tokenbridge's own venv: their
pins clash). Every command reads a JSON document on stdin and prints one JSON document:

  gs.py migrate URL            GPUStack's alembic migrations up to head on an empty database
  gs.py seed URL               catalog rows through GPUStack's own models (stdin: the spec)
  gs.py read URL               get_usage_breakdown (by user, api_key, route, date; self and
                               all scopes) and the dashboard's usage functions (stdin: query)
  gs.py oracle URL             reports through accumulate_gateway_metrics +
                               flush_gateway_metrics (GPUStack's own collector), then the
                               model_usages rows (stdin: list of gateway reports)
  gs.py bench URL              as oracle, timed; prints seconds and rows (stdin: reports)

URL: postgresql://user@host:port/db. GPUSTACK_TIMEZONE is pinned to UTC by the caller.
"""

import asyncio
import json
import sys
import time
from datetime import date
from pathlib import Path

import gpustack
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession


def _async_url(url):
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


def migrate(url, _spec):
    config = Config()
    config.set_main_option("script_location", str(Path(gpustack.__file__).with_name("migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
    return {"ok": True}


async def seed(url, spec):
    """Principals, clusters, models, routes, providers and keys as GPUStack's API makes them."""
    from gpustack.schemas.api_keys import ApiKey
    from gpustack.schemas.clusters import Cluster, ClusterProvider
    from gpustack.schemas.model_provider import ModelProvider
    from gpustack.schemas.model_routes import ModelRoute
    from gpustack.schemas.models import Model, ModelCreate
    from gpustack.schemas.principals import Principal, PrincipalType

    engine = create_async_engine(_async_url(url))
    ids = {}
    async with AsyncSession(engine, expire_on_commit=False) as session:
        for p in spec.get("principals", []):
            row = Principal(name=p["name"], kind=PrincipalType(p.get("kind", "user")),
                            is_admin=p.get("is_admin", False), is_active=True)
            session.add(row)
            await session.flush()
            ids[p["ref"]] = row.id
        for c in spec.get("clusters", []):
            row = Cluster(name=c["name"], provider=ClusterProvider.Docker, owner_principal_id=1)
            session.add(row)
            await session.flush()
            ids[c["ref"]] = row.id
        for m in spec.get("models", []):
            create = ModelCreate(name=m["name"], source="huggingface",
                                 huggingface_repo_id=m.get("repo", "Qwen/Qwen3-0.6B"),
                                 cluster_id=ids[m["cluster"]], replicas=1,
                                 categories=m.get("categories", ["llm"]),
                                 owner_principal_id=1)
            row = Model.convert_without_saving(create)
            session.add(row)
            await session.flush()
            ids[m["ref"]] = row.id
        for r in spec.get("routes", []):
            row = ModelRoute(name=r["name"], categories=["llm"], owner_principal_id=1,
                             created_model_id=ids.get(r.get("model")))
            session.add(row)
            await session.flush()
            ids[r["ref"]] = row.id
        for p in spec.get("providers", []):
            row = ModelProvider(name=p["name"], owner_principal_id=1, timeout=60,
                                config={"type": p["type"]}, api_tokens=["t"],
                                models=[{"name": n} for n in p["models"]])
            session.add(row)
            await session.flush()
            ids[p["ref"]] = row.id
        for k in spec.get("api_keys", []):
            owner = k.get("owner")
            row = ApiKey(name=k["name"], access_key=k["access_key"],
                         hashed_secret_key="h-" + k["access_key"], user_id=ids[k["user"]],
                         is_custom=k.get("is_custom", False), scope=["inference"],
                         owner_principal_id=ids[owner] if owner else None)
            session.add(row)
            await session.flush()
            ids[k["ref"]] = row.id
        await session.commit()
    await engine.dispose()
    return ids


def _plain(value):
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


async def read(url, query):
    """GPUStack's own read path: the usage breakdown and the dashboard functions."""
    from gpustack.api.tenant import TenantContext
    from gpustack.routes import dashboard
    from gpustack.routes.usage import get_usage_breakdown
    from gpustack.schemas.principals import Principal
    from gpustack.schemas.usage import UsageBreakdownRequest

    engine = create_async_engine(_async_url(url))
    out = {"breakdown": {}}
    async with AsyncSession(engine, expire_on_commit=False) as session:
        for view in query["views"]:
            user = await Principal.one_by_id(session, view["user"])
            if view["scope"] == "all":
                ctx = TenantContext(user=user, is_platform_admin=True,
                                    current_principal_id=None, org_role=None)
            else:
                ctx = TenantContext(user=user, is_platform_admin=False,
                                    current_principal_id=user.id, org_role=None,
                                    current_is_personal_scope=True)
            for group in view["group_by"]:
                request = UsageBreakdownRequest(
                    start_date=query["start"], end_date=query["end"], group_by=[group],
                    perPage=1000, scope=view["scope"])
                answer = await get_usage_breakdown(session=session, user=user, ctx=ctx,
                                                   request=request)
                out["breakdown"][f"{view['scope']}:{view['user']}/{group}"] = _plain(answer)
        if query.get("dashboard"):
            out["stats"] = _plain(await dashboard.get_model_usage_stats(session))
            out["summary"] = _plain(await dashboard.get_model_usage_summary(session))
            out["usages"] = _plain(await dashboard.get_model_usages(session))
    await engine.dispose()
    return out


async def _collect(url, reports):
    from gpustack.logging import setup_logging

    setup_logging()
    import gpustack.server.db as db
    from gpustack.server import metrics_collector as mc

    db.engine = create_async_engine(_async_url(url))
    metrics = [mc.ModelUsageMetrics(**r) for r in reports]
    started = time.perf_counter()
    await mc.accumulate_gateway_metrics(metrics)
    await mc.flush_gateway_metrics()
    seconds = time.perf_counter() - started
    left = len(mc.gateway_metrics_buffer) + len(mc.gateway_details_buffer)
    return db.engine, seconds, left


async def oracle(url, reports):
    from sqlalchemy import text

    engine, _seconds, left = await _collect(url, reports)
    if left:
        raise SystemExit(f"GPUStack's flush failed: {left} entries re-buffered")
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT * FROM model_usages ORDER BY id"))
        rows = [dict(row._mapping) for row in result]
    await engine.dispose()
    return _plain(rows)


async def bench(url, reports):
    from sqlalchemy import text

    engine, seconds, left = await _collect(url, reports)
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM model_usages"))).scalar()
    await engine.dispose()
    return {"seconds": seconds, "rollup_rows": count, "left_in_buffers": left}


COMMANDS = {"migrate": migrate, "seed": seed, "read": read, "oracle": oracle, "bench": bench}


def main():
    name, url = sys.argv[1], sys.argv[2]
    spec = json.loads(sys.stdin.read() or "null")
    result = COMMANDS[name](url, spec)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    sys.stdout.write(json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main()
