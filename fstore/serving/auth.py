"""Who may do what on a server: the tokens of ``server.auth`` in fstore.yaml and the scope
each operation needs (docs/protocol.md, "Access control").

A token is checked once per connection, in HELLO. Secrets are read from the environment
or a file when the server starts (never from fstore.yaml itself), kept only as SHA-256
digests, and compared with ``hmac.compare_digest`` against every configured digest, so
neither the time taken nor an early exit tells which (or how much of one) matched. No
secret is ever logged or put in an error message.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import PROJECT_FILE, RepoConfig
from ..errors import InvalidConfig
from .protocol import GET, HEALTH, HELLO, INFO, PUSH

ADMIN = "admin"  # implies every other scope
#: op code -> the scope it needs (None: any valid token). No admin-only op exists yet.
SCOPE_OF_OP: dict[int, str | None] = {HELLO: None, HEALTH: None, GET: "read", INFO: "read", PUSH: "push"}


@dataclass(frozen=True)
class Token:
    """A configured token: its name (said in messages), its scopes, its secret's digest."""

    name: str
    scopes: frozenset[str]
    digest: bytes

    def lacks(self, op: int) -> str | None:
        """The scope this token lacks for ``op``, or None when it may run it. An op the
        table does not know needs ``admin`` (a future operation is never open by default)."""
        need = SCOPE_OF_OP.get(op, ADMIN)
        if need is None or need in self.scopes or ADMIN in self.scopes:
            return None
        return need


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def _secret(config: RepoConfig, spec: dict[str, Any]) -> bytes:
    """A token's secret, from its environment variable or its file (relative to the repository)."""
    name = spec["name"]
    if spec["secret_env"] is not None:
        value = os.environ.get(spec["secret_env"])
        if value is None:
            raise InvalidConfig(f"token {name!r}: environment variable {spec['secret_env']} is not set",
                                file=PROJECT_FILE, field="server.auth.tokens")
        secret = value.strip().encode()
    else:
        path = config.root / Path(spec["secret_file"]).expanduser()
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise InvalidConfig(f"token {name!r}: cannot read secret_file {config.rel(path)}: {exc.strerror}",
                                file=PROJECT_FILE, field="server.auth.tokens") from None
    if not secret:
        raise InvalidConfig(f"token {name!r}: its secret is empty", file=PROJECT_FILE, field="server.auth.tokens")
    return secret


class Tokens:
    """The tokens a server accepts."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens

    @classmethod
    def load(cls, config: RepoConfig) -> "Tokens | None":
        """The configured tokens with their secrets read, or None when no token is configured
        (then every connection may run every op). Raises InvalidConfig naming the token
        whose secret is missing, empty or shared with another token."""
        specs = (config.server.get("auth") or {}).get("tokens") or []
        if not specs:
            return None
        tokens: list[Token] = []
        for spec in specs:
            digest = _digest(_secret(config, spec))
            for other in tokens:
                if hmac.compare_digest(other.digest, digest):
                    raise InvalidConfig(f"tokens {other.name!r} and {spec['name']!r} have the same secret",
                                        file=PROJECT_FILE, field="server.auth.tokens")
            tokens.append(Token(spec["name"], frozenset(spec["scopes"]), digest))
        return cls(tokens)

    def check(self, presented: Any) -> Token | None:
        """The token whose secret ``presented`` is, or None. Every digest is compared, whatever matched."""
        if not isinstance(presented, str) or not presented.strip():
            return None
        digest = _digest(presented.strip().encode("utf-8", "surrogatepass"))  # as the secrets are read
        found = None
        for token in self.tokens:
            if hmac.compare_digest(token.digest, digest):
                found = token
        return found

    def __len__(self) -> int:
        return len(self.tokens)
