"""TLS (issue 9, part 2): ``server.tls`` in fstore.yaml or ``fstore serve --tls-*``, a client
CA for mutual TLS, both clients and ``fstore get`` with a TLS context; certificates made by
the test (tests/tls_util.py). The real ``fstore serve`` in a subprocess, 127.0.0.1 only.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from fstore import FeatureStore
from fstore import errors as E
from fstore.client import AsyncClient, Client
from fstore.serving.tls import client_context
from server_util import FSTORE, HOST, STATS, Server, repo_copy
from tls_util import Certs, make_certs

pytestmark = pytest.mark.timeout(120)
IDS = [1, 2, 3, 399, 10**9]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Path:
    """TLS from fstore.yaml, with paths relative to the repository."""
    root = repo_copy(tmp_path_factory, "tls", {"tls": {"cert": "tls/server.pem", "key": "tls/server.key"}})
    (root / "tls").mkdir()
    shutil.copy(certs.server_cert, root / "tls" / "server.pem")
    shutil.copy(certs.server_key, root / "tls" / "server.key")
    return root


@pytest.fixture(scope="module")
def tls_server(repo: Path, certs: Certs) -> Iterator[Server]:
    srv = Server(repo, client={"ssl": client_context(str(certs.ca))})
    try:
        yield srv
    finally:
        srv.stop()


def expected(repo: Path) -> dict:
    with FeatureStore(repo) as fs:
        return fs.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in IDS]).to_dict(
            include_metadata=True)


def test_tls_from_fstore_yaml_serves_both_clients(tls_server: Server, repo: Path, certs: Certs) -> None:
    want = expected(repo)
    ctx = client_context(str(certs.ca))
    for host in (HOST, "localhost"):  # the certificate names both
        with Client(host, tls_server.port, timeout=10, ssl=ctx) as c:
            assert c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in IDS]).to_dict(
                include_metadata=True) == want
            for _ in range(3):  # the pooled TLS connection is reused
                assert c.health()["live"]
            assert len(c._pool) == 1

    async def main() -> dict:
        async with AsyncClient(HOST, tls_server.port, timeout=10, ssl=ctx) as ac:
            got = await ac.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in IDS])
            return got.to_dict(include_metadata=True)
    assert asyncio.run(asyncio.wait_for(main(), 60)) == want
    assert "on 127.0.0.1:%d: 1 worker(s), TLS," % tls_server.port in tls_server.logs()


def test_tls_failures_name_the_server(tls_server: Server, certs: Certs) -> None:
    where = f"{HOST}:{tls_server.port}"
    with Client(HOST, tls_server.port, timeout=10) as plain:  # no TLS against a TLS server
        with pytest.raises(E.ServerUnreachable) as info:
            plain.health()
        assert where in str(info.value) and "does it need TLS" in str(info.value)
    with Client(HOST, tls_server.port, timeout=10, ssl=client_context(str(certs.other_ca))) as wrong_ca:
        with pytest.raises(E.ServerUnreachable) as info:
            wrong_ca.health()
        assert str(info.value).startswith(f"TLS handshake with fstore server at {where} failed: "), info.value

    async def main() -> None:
        async with AsyncClient(HOST, tls_server.port, timeout=10, ssl=client_context(str(certs.other_ca))) as ac:
            with pytest.raises(E.ServerUnreachable, match="TLS handshake with fstore server at"):
                await ac.health()
        async with AsyncClient(HOST, tls_server.port, timeout=10) as ac:
            with pytest.raises(E.ServerUnreachable, match="does it need TLS"):
                await ac.health()
    asyncio.run(asyncio.wait_for(main(), 60))
    with pytest.raises(E.InvalidArgument, match="cannot load the TLS CA"):
        client_context(str(certs.ca.parent / "missing.pem"))


def test_mutual_tls_from_the_command_line(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> None:
    """--tls-client-ca: a client must show a certificate the CA signed; ``fstore get`` builds
    its context from --tls-ca/--tls-cert/--tls-key. Flags override fstore.yaml (none here)."""
    root = repo_copy(tmp_path_factory, "mtls")
    full = client_context(str(certs.ca), str(certs.client_cert), str(certs.client_key))
    srv = Server(root, workers=2, client={"ssl": full},
                 extra=["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                        "--tls-client-ca", str(certs.ca)])
    try:
        with Client(HOST, srv.port, timeout=10, ssl=full) as c:
            assert c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in IDS]).to_dict(
                include_metadata=True) == expected(root)
        with Client(HOST, srv.port, timeout=10, ssl=client_context(str(certs.ca))) as no_cert:
            with pytest.raises(E.ServerUnreachable, match=f"{HOST}:{srv.port}"):
                no_cert.health()
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        base = [FSTORE, "get", "--port", str(srv.port), "--features", STATS[2], "customer_id=1"]
        ok = subprocess.run([*base, "--tls-ca", str(certs.ca), "--tls-cert", str(certs.client_cert),
                             "--tls-key", str(certs.client_key)], capture_output=True, text=True, timeout=60, env=env)
        assert ok.returncode == 0 and "segment" in ok.stdout, ok.stderr
        bad = subprocess.run([*base, "--tls-ca", str(certs.ca)], capture_output=True, text=True, timeout=60, env=env)
        assert bad.returncode == 1 and f"{HOST}:{srv.port}" in bad.stderr and "Traceback" not in bad.stderr
        assert "TLS with client certificates" in srv.logs()
        assert srv.terminate(30) == 0, srv.logs()
    finally:
        srv.stop()


def test_tls_files_that_cannot_be_loaded_are_one_clear_error(repo: Path, certs: Certs) -> None:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    cases = [(["--tls-cert", str(certs.ca.parent / "nope.pem"), "--tls-key", str(certs.server_key)],
              "cannot load the TLS certificate"),
             (["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.client_key)],  # not its key
              "cannot load the TLS certificate"),
             (["--tls-client-ca", str(certs.server_key)], "cannot load the TLS client CA"),
             ]
    for extra, says in cases:
        proc = subprocess.run([FSTORE, "-r", str(repo), "serve", "--port", "0", *extra], capture_output=True,
                              text=True, timeout=60, env=env)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        [line] = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
        assert says in line, (extra, line)
    half = repo.parent / "half"
    shutil.copytree(repo, half)
    (half / "fstore.yaml").write_text("project: demo\nserver:\n  tls: {cert: tls/server.pem}\n")
    proc = subprocess.run([FSTORE, "-r", str(half), "serve", "--port", "0"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 1 and "server.tls.key: a TLS server needs both cert and key" in proc.stderr
