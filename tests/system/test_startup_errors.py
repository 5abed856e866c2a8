"""Startup errors as a user meets them: ``tokenbridge`` run in an empty directory, each case
answered with one line naming the setting, its value and what to do, and its exit code (2:
configuration, 1: a dependency not there); no traceback unless ``--log-level DEBUG``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from collector.config import Config
from tests.certs import self_signed
from tests.conftest import PG_URL
from tests.support import ROOT, Server, free_port

URL_HELP = "use postgresql://user:password@host:5432/db or sqlite:///path/to/file.db"
SECTIONS = ", ".join(Config.model_fields)


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(exit code, first line of stderr, all of stderr) of ``tokenbridge ARGS`` in ``cwd``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBRIDGE_")}
    environ.update(PYTHONPATH=str(ROOT), **(env or {}))
    done = subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                          text=True, env=environ, cwd=cwd, timeout=60, check=False)  # fmt: skip
    return done.returncode, (done.stderr.splitlines() or [""])[0], done.stderr


def test_database_urls_a_user_can_get_wrong(tmp_path: Path) -> None:
    cases = [
        (("report", "--database-url", "postgresq://bridge:s3cret@db/usage"), 2,
         "--database-url postgresq://bridge:***@db/usage (database.url): unknown database "
         f"scheme 'postgresq'; {URL_HELP}"),
        (("serve", "--database-url", "x.db"), 2,
         f"--database-url x.db (database.url): not a database URL; {URL_HELP}"),
        (("serve", "--database-url", "sqlite:///nodir/x.db"), 2,
         "--database-url sqlite:///nodir/x.db: directory nodir does not exist; create it or "
         "choose another path"),
        (("migrate", "--database-url", "sqlite:////proc/x.db"), 2,
         "--database-url sqlite:////proc/x.db: cannot write in /proc; fix its permissions or "
         "choose another path"),
    ]  # fmt: skip
    for args, code, line in cases:
        assert run(tmp_path, *args)[:2] == (code, f"tokenbridge: error: {line}"), args
    assert list(tmp_path.iterdir()) == []


def test_postgresql_not_listening_or_without_the_database(tmp_path: Path) -> None:
    port = free_port()
    down = f"postgresql://bridge:s3cret@127.0.0.1:{port}/usage"
    refused = (1, f"tokenbridge: error: --database-url postgresql://bridge:***@127.0.0.1:{port}"
               f"/usage: nothing listens on 127.0.0.1:{port} (connection refused); start "
               "PostgreSQL or fix the host and port")  # fmt: skip
    assert run(tmp_path, "migrate", "--database-url", down)[:2] == refused
    ports = ["--grpc-port", str(free_port()), "--http-port", str(free_port()),
             "--metrics-port", str(free_port())]  # fmt: skip
    assert run(tmp_path, "serve", "--database-url", down, *ports)[:2] == refused
    missing = PG_URL.rsplit("/", 1)[0] + "/tokenbridge_no_such_db"
    code, line, _ = run(tmp_path, "report", "--database-url", missing)
    if "connection refused" in line and not os.environ.get("CI"):
        pytest.skip(f"PostgreSQL at {PG_URL} unreachable")
    assert (code, line) == (2, f"tokenbridge: error: --database-url {missing}: database "
                            "'tokenbridge_no_such_db' "
                            "does not exist on 127.0.0.1:5432; create it (createdb "
                            "tokenbridge_no_such_db) or fix the name")  # fmt: skip


async def test_a_database_down_at_start_without_migration_is_served_as_an_outage(
    tmp_path: Path, server_factory: type[Server]
) -> None:
    port = free_port()
    config = {"database": {"migrate_on_start": False, "connect_timeout": 1.0}}
    server = server_factory(f"postgresql://bridge:s3cret@127.0.0.1:{port}/usage", tmp_path,
                            config).start()  # fmt: skip
    body = {"model": "m", "input_token": 1, "request_id": "r"}
    url = f"{server.http}/v2/usage/gateway-metrics"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as answer:
        assert (answer.status, await answer.json()) == (
            503, {"code": 14, "message": "database unavailable"})
    assert server.stop() == 0
    log = server.log()
    assert "WARNING collector.commit: database unavailable (no answer at start, or schema not " \
           "at head): answering retryable (HTTP 503 with Retry-After, gRPC UNAVAILABLE) until " \
           "it answers" in log  # fmt: skip
    assert f"database postgresql://bridge:***@127.0.0.1:{port}/usage at revision none" in log
    assert "s3cret" not in log


def test_report_in_an_empty_directory_creates_no_database(tmp_path: Path) -> None:
    code, line, stderr = run(tmp_path, "report")
    assert (code, line) == (2, "tokenbridge: error: database.url (default) "
                            "sqlite+aiosqlite:///tokenbridge.db: no database file tokenbridge.db;"
                            " point it at the bridge's database, or run tokenbridge migrate (or "
                            "serve) first")  # fmt: skip
    assert stderr.count("\n") == 1
    assert run(tmp_path, "rejects", "replay")[0] == 2
    assert list(tmp_path.iterdir()) == []
    # An existing file without the tables is not a bridge's database either.
    (tmp_path / "other.db").write_bytes(b"")
    assert run(tmp_path, "report", "--database-url", "sqlite:///other.db")[:2] == (
        2, "tokenbridge: error: --database-url sqlite:///other.db: the database has no "
        "tokenbridge tables; run tokenbridge migrate (or serve) first, or point it at the "
        "bridge's database")  # fmt: skip
    assert (tmp_path / "other.db").read_bytes() == b""


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    cases = [
        (("serve", "--workers", "0"), "argument --workers: 0 is not allowed, give 1 or more; "
         "see tokenbridge serve --help"),
        (("serve", "--workers", "-1"), "argument --workers: -1 is not allowed, give 1 or more; "
         "see tokenbridge serve --help"),
        (("report", "--from", "2026-02-01", "--to", "2026-01-01"),
         "--from 2026-02-01 is after --to 2026-01-01; swap them"),
        (("report", "--from", "yesterday"), "argument --from: 'yesterday' is not a date, use "
         "YYYY-MM-DD; see tokenbridge report --help"),
        (("serve", "--config", "nofile.yaml"),
         "--config nofile.yaml: no such file; give the path of a YAML file"),
    ]  # fmt: skip
    for args, line in cases:
        assert run(tmp_path, *args)[:2] == (2, f"tokenbridge: error: {line}"), args


def test_configuration_files_and_environment(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("receivers:\n  grpc_port: 1\n   http_port: 2\n")
    assert run(tmp_path, "serve", "-c", "bad.yaml")[:2] == (
        2, "tokenbridge: error: --config bad.yaml: YAML syntax error at line 3, column 13: "
        "mapping values are not allowed here; fix the file")  # fmt: skip
    stray = run(tmp_path, "report", env={"TOKENBRIDGE_HOME": "/home/me"})
    assert stray[:2] == (2, "tokenbridge: error: TOKENBRIDGE_HOME=/home/me: not a tokenbridge "
                         f"setting; unset it (TOKENBRIDGE_<SECTION>__<KEY> sets a key; "
                         f"sections: {SECTIONS})")  # fmt: skip
    secret = run(tmp_path, "serve", env={"TOKENBRIDGE_AUTH__TOKENS": "[' ']"})
    assert secret[:2] == (2, "tokenbridge: error: TOKENBRIDGE_AUTH__TOKENS=*** "
                          "(auth.tokens): each token must be non-empty printable ASCII "
                          "without spaces")  # fmt: skip
    assert list(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_a_catalog_that_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "tb.yaml").write_text("catalog: {path: nofile.yaml}\n")
    assert run(tmp_path, "serve", "-c", "tb.yaml")[:2] == (
        2, "tokenbridge: error: tb.yaml: catalog.path nofile.yaml: No such file or directory; "
        "fix the file or the path")  # fmt: skip
    (tmp_path / "catalog.yaml").write_text("models: [{id: x, name: m}]\n")
    (tmp_path / "tb.yaml").write_text("catalog: {path: catalog.yaml}\n")
    assert run(tmp_path, "serve", "-c", "tb.yaml")[:2] == (
        2, "tokenbridge: error: tb.yaml: catalog.path catalog.yaml: models.0.id: Input should "
        "be a valid integer, unable to parse string as an integer; fix the file or the path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.yaml", "tb.yaml"]


def test_a_certificate_and_a_key_that_do_not_match(tmp_path: Path) -> None:
    one, two = self_signed(_dir(tmp_path / "one")), self_signed(_dir(tmp_path / "two"))
    (tmp_path / "tls.yaml").write_text(f"tls: {{cert_file: {one.cert}, key_file: {two.key}}}\n")
    assert run(tmp_path, "serve", "-c", "tls.yaml")[:2] == (
        2, f"tokenbridge: error: tls.yaml: tls: cert_file {one.cert} and key_file {two.key} "
        "are not a PEM certificate and its private key ([X509: KEY_VALUES_MISMATCH] key values "
        "mismatch); give the matching pair")  # fmt: skip


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("flag", ["--grpc-port", "--http-port", "--metrics-port"])
def test_a_port_in_use_names_the_port_and_the_process(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--grpc-port": free_port(), "--http-port": free_port(),
                 "--metrics-port": free_port(), flag: port}  # fmt: skip
        args = [x for pair in ports.items() for x in (pair[0], str(pair[1]))]
        code, line, stderr = run(tmp_path, "serve", "--database-url", "sqlite:///t.db", *args)
    assert (code, line.split(" (")[0]) == (
        1, f"tokenbridge: error: {flag} {port}: port {port} is already in use by process "
        f"{os.getpid()}")  # fmt: skip
    assert line.endswith("; stop it or choose another port")
    assert "Traceback" not in stderr


def test_debug_adds_the_traceback_after_the_line(tmp_path: Path) -> None:
    code, line, stderr = run(tmp_path, "serve", "--log-level", "DEBUG", "--database-url", "x.db")
    assert (code, line) == (2, "tokenbridge: error: --database-url x.db (database.url): not "
                            f"a database URL; {URL_HELP}")  # fmt: skip
    assert "Traceback (most recent call last)" in stderr


def test_help_lists_every_command_and_the_defaults(tmp_path: Path) -> None:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}

    def helps(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "collector", *args, "--help"], env=environ,
                              capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    listed = [line.split()[0] for line in helps().split("COMMAND\n", 2)[-1].splitlines()
              if line.startswith("    ") and not line.startswith("     ")]  # fmt: skip
    assert listed == ["serve", "migrate", "prune", "archive", "report", "rejects", "reprice",
                      "loadgen", "demo"]
    assert "only this model name" in helps("reprice")
    assert "processes sharing the ports (one per core) (default: 1)" in helps("serve")
    assert "(default: date,model_name)" in helps("report")
    assert "spans/s (0: as fast as answered) (default: 0.0)" in helps("loadgen")
    assert "--reason REASON" in helps("rejects", "replay")
