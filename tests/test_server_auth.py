"""Access control (issue 9, part 2): tokens with scopes in fstore.yaml, sent in HELLO and
checked once per connection; UNAUTHENTICATED without a valid one, PERMISSION_DENIED
naming the scope a token lacks; secrets never logged nor sent back; clear errors for a
token whose secret is missing; loopback only without tokens unless ``--insecure``. The real
``fstore serve`` in a subprocess, 127.0.0.1 only.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from fstore import FeatureStore
from fstore import errors as E
from fstore.client import AsyncClient, Client
from fstore.serving.supervisor import is_loopback
from server_util import (FSTORE, GET, HEALTH, HELLO, HOST, INFO, PUSH, PUSH_BASE, REPO_ROOT, STATS, UTC, Raw, Server,
                         assert_error, frame, free_port, get_args, repo_copy, stats_rows)

pytestmark = pytest.mark.timeout(120)

READER, PUSHER, BOSS = "r3ader-s3cret", "pusher-s3cret-from-a-file", "b0ss-s3cret"
ENV = {"FSTORE_T_READER": READER, "FSTORE_T_BOSS": BOSS}
TOKENS = [{"name": "reader", "scopes": ["read"], "secret_env": "FSTORE_T_READER"},
          {"name": "pusher", "scopes": ["push"], "secret_file": "secrets/pusher.txt"},
          {"name": "boss", "scopes": ["admin"], "secret_env": "FSTORE_T_BOSS"}]
SECRETS = (READER, PUSHER, BOSS)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = repo_copy(tmp_path_factory, "auth", {"auth": {"tokens": TOKENS}})
    (root / "secrets").mkdir()
    (root / "secrets" / "pusher.txt").write_text(PUSHER + "\n")  # relative to the repository; the newline is not part
    return root


@pytest.fixture(scope="module")
def authed(repo: Path) -> Iterator[Server]:
    srv = Server(repo, env=ENV, client={"token": READER})
    try:
        yield srv
    finally:
        srv.stop()


def raw_hello(port: int, args: dict[str, Any]) -> Raw:
    raw = Raw(port, hello=False)
    raw.request(HELLO, 1, {"version": 1, **args})
    return raw


def no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


def test_without_a_valid_token_a_connection_gets_unauthenticated(authed: Server) -> None:
    with Raw(authed.port, hello=False) as raw:  # any op before HELLO
        raw.request(GET, 7, get_args([1]))
        err = assert_error(raw.read(), 7, "UNAUTHENTICATED")
        assert "token" in err["message"] and raw.closed_by_server()
    for args, says in (({}, "needs a valid token"), ({"token": "wrong"}, "not valid"), ({"token": 123}, "not valid"),
                       ({"token": READER[:-1]}, "not valid"), ({"token": ""}, "not valid")):
        with raw_hello(authed.port, args) as raw:
            err = assert_error(raw.read(), 1, "UNAUTHENTICATED")
            assert says in err["message"] and raw.closed_by_server(), (args, err)
            no_secret_in(err["message"])
    for token in (None, "wrong"):
        with Client(HOST, authed.port, timeout=10, token=token) as c:
            with pytest.raises(E.Unauthenticated) as info:
                c.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
            assert info.value.code == "UNAUTHENTICATED" and isinstance(info.value, PermissionError)

    async def main() -> None:
        async with AsyncClient(HOST, authed.port, timeout=10, token="wrong") as ac:
            with pytest.raises(E.Unauthenticated):
                await ac.health()
        async with AsyncClient(HOST, authed.port, timeout=10, token=READER) as ac:
            assert (await ac.health())["live"]
    asyncio.run(asyncio.wait_for(main(), 60))


def test_scopes_are_checked_per_request(authed: Server) -> None:
    now = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    with Client(HOST, authed.port, timeout=10, token=READER) as reader, \
            Client(HOST, authed.port, timeout=10, token=PUSHER) as pusher, \
            Client(HOST, authed.port, timeout=10, token=BOSS) as boss:
        for _ in range(3):  # the second and third take the compiled path
            assert reader.get_online_features(STATS, entity_rows=[{"customer_id": 1}]).to_dict()
        assert reader.info()["project"] == "demo" and reader.health()["live"]
        with pytest.raises(E.PermissionDenied) as info:
            reader.push("customer_stats", stats_rows([PUSH_BASE + 1], now))
        assert str(info.value) == "token 'reader' lacks scope 'push'" and info.value.code == "PERMISSION_DENIED"
        assert reader.get_online_features(STATS, entity_rows=[{"customer_id": 1}]).to_dict()  # the connection goes on

        assert pusher.push("customer_stats", stats_rows([PUSH_BASE + 1], now)) == 1
        assert pusher.health()["live"]
        for call in (lambda: pusher.get_online_features(STATS, entity_rows=[{"customer_id": 1}]),  # a prepared shape
                     pusher.info):
            with pytest.raises(E.PermissionDenied) as info:
                call()
            assert str(info.value) == "token 'pusher' lacks scope 'read'"

        assert boss.push("customer_stats", stats_rows([PUSH_BASE + 2], now)) == 1  # admin implies every scope
        got = boss.get_online_features(STATS, entity_rows=[{"customer_id": PUSH_BASE + 1}])
        assert got.values("txn_count_7d") == [(PUSH_BASE + 1) * 3 + 1]

    with raw_hello(authed.port, {"token": READER}) as raw:
        assert raw.read()[1] is True
        raw.send(frame([PUSH, 2, {"view": "customer_stats", "rows": stats_rows([PUSH_BASE + 3], now)}]))
        assert_error(raw.read(), 2, "PERMISSION_DENIED")
        raw.request(INFO, 3, {})
        raw.request(HEALTH, 4, {})
        assert [r[1] for r in (raw.read(), raw.read())] == [True, True]
        # one write: GETs of a prepared shape, a new HELLO with a token that may not read, a GET
        raw.send(frame([GET, 5, get_args([1])]) + frame([GET, 6, get_args([1])])
                 + frame([HELLO, 7, {"version": 1, "token": PUSHER}]) + frame([GET, 8, get_args([1])]))
        replies = {r[0]: r for r in (raw.read() for _ in range(4))}
        assert [replies[k][1] for k in (5, 6, 7)] == [True, True, True]
        assert assert_error(replies[8], 8, "PERMISSION_DENIED")["message"] == "token 'pusher' lacks scope 'read'"

    async def main() -> None:
        async with AsyncClient(HOST, authed.port, timeout=10, token=READER) as ac:
            with pytest.raises(E.PermissionDenied, match="lacks scope 'push'"):
                await ac.push("customer_stats", stats_rows([PUSH_BASE + 4], now))
    asyncio.run(asyncio.wait_for(main(), 60))
    with FeatureStore(authed.repo) as fs:  # nothing a refused PUSH sent was written
        assert fs.get_online_features(STATS, entity_rows=[{"customer_id": PUSH_BASE + k} for k in (3, 4)]) \
            .values("txn_count_7d") == [None, None]
    log = authed.log.read_text()
    assert "3 auth token(s)" in log
    no_secret_in(log)


def test_fstore_get_reads_the_token_from_an_environment_variable(authed: Server) -> None:
    base = [FSTORE, "get", "--port", str(authed.port), "--features", STATS[0], "customer_id=1"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "MY_TOKEN": READER}
    ok = subprocess.run([*base, "--token-env", "MY_TOKEN"], capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0 and "avg_amount_7d" in ok.stdout, ok.stderr
    missing = subprocess.run([*base, "--token-env", "NOT_SET_ANYWHERE"], capture_output=True, text=True, timeout=60,
                             env=env)
    assert missing.returncode == 2 and "NOT_SET_ANYWHERE is not set" in missing.stderr, missing.stderr
    none = subprocess.run(base, capture_output=True, text=True, timeout=60, env=env)
    assert none.returncode == 1 and "needs a valid token" in none.stderr and "Traceback" not in none.stderr


def serve_once(repo: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``fstore serve`` expected to exit by itself (refused before serving)."""
    return subprocess.run([FSTORE, "-r", str(repo), "serve", "--port", str(free_port()), *extra],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                          env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1", **(env or {})})


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    return line


def test_a_token_whose_secret_is_missing_is_a_clear_config_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "bad_tokens")

    def with_tokens(tokens: list[dict[str, Any]]) -> Path:
        (root / "fstore.yaml").write_text(yaml.safe_dump({"project": "demo", "server": {"auth": {"tokens": tokens}}}))
        return root

    line = error_line(serve_once(with_tokens(TOKENS), env={"FSTORE_T_BOSS": BOSS}))
    assert "token 'reader': environment variable FSTORE_T_READER is not set" in line, line
    line = error_line(serve_once(with_tokens([TOKENS[1]])))  # relative to the repository: not there
    assert "token 'pusher': cannot read secret_file secrets/pusher.txt: No such file or directory" in line, line
    line = error_line(serve_once(with_tokens([dict(TOKENS[0], scopes=["read", "write"])]), env=ENV))
    assert "token 'reader': unknown scope 'write'; known: read, push, admin" in line, line
    line = error_line(serve_once(with_tokens([dict(TOKENS[0], secret_file="x")]), env=ENV))
    assert "token 'reader': give exactly one of secret_env and secret_file" in line, line
    line = error_line(serve_once(with_tokens([TOKENS[0], dict(TOKENS[2], secret_env="FSTORE_T_READER")]), env=ENV))
    assert "tokens 'reader' and 'boss' have the same secret" in line, line
    line = error_line(serve_once(with_tokens(TOKENS), env={"FSTORE_T_READER": " ", "FSTORE_T_BOSS": BOSS}))
    assert "token 'reader': its secret is empty" in line, line


def test_without_tokens_the_server_listens_on_loopback_only(tmp_path_factory: pytest.TempPathFactory,
                                                            repo: Path) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this machine: a server allowed to listen there
    fails to bind instead of being refused, so nothing is ever exposed by this test."""
    open_repo = repo_copy(tmp_path_factory, "open")
    line = error_line(serve_once(open_repo, "--host", "192.0.2.1"))
    assert "refusing to listen on 192.0.2.1 without auth tokens" in line and "--insecure" in line, line
    insecure = serve_once(open_repo, "--host", "192.0.2.1", "--insecure")
    assert "WARNING listening on 192.0.2.1 without auth tokens (--insecure)" in insecure.stderr, insecure.stderr
    assert "cannot listen on 192.0.2.1:" in error_line(insecure)
    with_tokens = serve_once(repo, "--host", "192.0.2.1", env=ENV)  # tokens configured: any address
    assert "cannot listen on 192.0.2.1:" in error_line(with_tokens) and "WARNING" not in with_tokens.stderr
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.1", "", "no-such-host.invalid"]))
