"""One bridge per port: a second ``serve`` on ports already served is refused at start, with
or without ``--workers``, and the running one keeps every request (its workers still share)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.support import Server, free_port, query
from tests.system.test_startup_errors import run


async def _push(server: Server, n: int) -> tuple[int, dict[str, int]]:
    body = {"model": "m", "input_token": 10, "output_token": 1, "total_token": 11,
            "completed": True, "request_id": f"split-{n}"}  # fmt: skip
    # A new connection per push: the kernel picks a listener per connection.
    url = f"{server.http}/v2/usage/gateway-metrics"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as answer:
        return answer.status, await answer.json()


@pytest.mark.parametrize("workers", [["--workers", "2"], []], ids=["workers", "single"])
async def test_a_second_bridge_on_served_ports_is_refused_and_the_first_keeps_all(
    server_factory: type[Server], tmp_path: Path, workers: list[str]
) -> None:
    first_db = tmp_path / "wA.db"
    first = server_factory(f"sqlite:///{first_db}", tmp_path, extra_args=["--workers", "2"])
    first.start()
    assert first.process is not None
    pid = first.process.pid
    for second in (["--workers", "2"], []):
        code, line, stderr = run(
            tmp_path, "serve", "--database-url", "sqlite:///wB.db", *second,
            "--grpc-port", str(first.grpc_port), "--http-port", str(first.http_port),
            "--metrics-port", str(free_port()),
        )  # fmt: skip
        assert (code, line) == (
            1, f"tokenbridge: error: --grpc-port {first.grpc_port}: port {first.grpc_port} is "
            f"already in use by tokenbridge (pid {pid}); stop it or choose another port")
        assert "Traceback" not in stderr
    code, line, _ = run(tmp_path, "serve", *workers, "--database-url", "sqlite:///wB.db",
                        "--grpc-port", str(free_port()), "--http-port", str(first.http_port),
                        "--metrics-port", str(free_port()))  # fmt: skip
    assert (code, line) == (
        1, f"tokenbridge: error: --http-port {first.http_port}: port {first.http_port} is "
        f"already in use by tokenbridge (pid {pid}); stop it or choose another port")
    assert first.metrics_port is not None
    code, line, _ = run(tmp_path, "serve", *workers, "--database-url", "sqlite:///wB.db",
                        "--grpc-port", str(free_port()), "--http-port", str(free_port()),
                        "--metrics-port", str(first.metrics_port))  # fmt: skip
    assert (code, line.split(" is already")[0]) == (
        1, f"tokenbridge: error: --metrics-port {first.metrics_port}: port "
        f"{first.metrics_port}")  # fmt: skip
    assert not (tmp_path / "wB.db").exists()

    answers = [await _push(first, n) for n in range(20)]
    assert answers == [(200, {"accepted": 1, "rejected": 0, "ignored": 0, "message": ""})] * 20
    assert first.stop() == 0
    assert await query(f"sqlite:///{first_db}", "SELECT count(*), sum(prompt_token_count) "
                       "FROM model_usage_details") == [(20, 200)]  # fmt: skip
    assert "20 reports committed by 2 workers" in first.log()
