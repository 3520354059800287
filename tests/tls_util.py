"""Certificates for the TLS tests, made by the test with the ``openssl`` command line
(the ``cryptography`` package is not a dependency): a CA, a server certificate it signed
for 127.0.0.1 and localhost, a client certificate it signed, and a second CA that signed
nothing the server knows (a client that trusts it must fail the handshake)."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=fstore test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)


def _signed(folder: Path, name: str, usage: str, san: str | None) -> None:
    _openssl("req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=fstore test {name}",
             cwd=folder)
    ext = folder / f"{name}.ext"
    ext.write_text(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if san else ""))
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", ext.name, cwd=folder)


def make_certs(folder: Path) -> Certs:
    if shutil.which("openssl") is None:  # pragma: no cover - the CI image has it
        pytest.fail("the TLS tests need the openssl command line")
    folder.mkdir(parents=True, exist_ok=True)
    _ca(folder, "ca")
    _ca(folder, "other_ca")
    _signed(folder, "server", "serverAuth", "IP:127.0.0.1,DNS:localhost")
    _signed(folder, "client", "clientAuth", None)
    return Certs(folder / "ca.pem", folder / "server.pem", folder / "server.key", folder / "client.pem",
                 folder / "client.key", folder / "other_ca.pem")
