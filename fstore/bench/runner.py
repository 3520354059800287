"""``fstore bench``: drive a running fstore server (or, like for like, a Redis server holding
the same rows) with the compiled load generator, and report (docs/benchmarks.md).

``run(...)`` is the one entry point, for the command, a benchmark gate or a test; it returns
a BenchResult (``.to_json()``, ``.met``). Errors before the run (no repository, bad keys,
an unreachable server: ServerUnreachable naming host:port) are raised; errors during it
(error replies, lost connections, timeouts) are counted in the result.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..config import SERVER_KEYS
from ..errors import FstoreError, InvalidArgument
from . import conns
from .drive import Plan, drive
from .frames import ID_OFFSET, fstore_frames, redis_frames, redis_weights
from .keys import file_keys, sample_keys
from .result import BenchResult, Sla
from .target import Ask, Repository

DEFAULT_HOST = "127.0.0.1"
REDIS_PORT = 6379
ROWS_PER_THREAD = 200_000   # entity rows packed per thread: the frames cycle through them
MIN_FRAMES, MAX_FRAMES = 64, 4096
SATURATED = 0.9             # a generator busy this share of its threads' time is named as a possible bound


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """HOST:PORT (or HOST, or :PORT) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    try:
        return host or DEFAULT_HOST, int(port)
    except ValueError:
        raise InvalidArgument(f"{text!r}: expected HOST:PORT") from None


def run(repo: str | Path | None = ".", *, host: str | None = None, port: int | None = None,
        service: str | None = None, features: Sequence[str] | None = None, model: str | None = None,
        entities: int = 1, connections: int = 32, duration: float = 10.0, warmup: float = 1.0,
        rate: float | None = None, keys: str | Path | None = None, threads: int = 1, redis: str | None = None,
        token: str | None = None, tls: Any = None, sla_p99_ms: float | None = None,
        sla_min_rps: float | None = None, seed: int = 0, timeout: float = 10.0) -> BenchResult:
    """One bench run (docs/benchmarks.md, "fstore bench"): the server at host:port (default the
    repository's ``server`` settings), or with ``redis="HOST:PORT"`` that Redis server after the
    rows the run asks for are copied into it. ``tls`` (an ssl.SSLContext) is refused: the
    compiled generator speaks plain TCP only."""
    _check(entities, connections, duration, warmup, rate, threads, timeout)
    if tls is not None and redis is None:
        raise InvalidArgument("fstore bench drives plain TCP only (its compiled load generator has no TLS): bench "
                              "the server over a listener without TLS, e.g. a second `fstore serve` of the same "
                              "repository on another port with tls unset")
    ask = Ask(service, list(features) if features is not None else None, model)
    repository = Repository.find(repo)
    if repository is None and (keys is None or redis is not None):
        raise InvalidArgument(f"no feature repository at {Path(repo or '.').resolve()} (no fstore.yaml): fstore bench "
                              "reads its keys from the repository's online store" +
                              (" and copies its rows into Redis" if redis else "; or give --keys FILE"))
    notes: list[str] = []
    try:
        resolved = None
        if repository is not None:
            try:
                resolved = repository.resolve(ask)
            except FstoreError as exc:  # what the server will refuse too: sent anyway, its errors counted
                resolved = repository.resolve_loosely(ask)
                if redis is not None or (resolved is None and keys is None):
                    raise
                notes.append(f"the repository refuses this request ({exc}): it is sent as given, and the "
                             "server's answers counted")
        threads = min(threads, connections)
        per_thread = max(MIN_FRAMES, min(MAX_FRAMES, ROWS_PER_THREAD // entities))
        n_rows = threads * per_thread * entities
        if keys is not None:
            columns = file_keys(keys, resolved, n_rows)
        else:
            assert repository is not None and resolved is not None
            columns = sample_keys(repository.store, resolved, n_rows, seed)
        key_info = {"source": str(keys) if keys is not None else "online store", "seed": None if keys else seed,
                    "rows": n_rows, "distinct": len(set(zip(*columns.values())))}
        sla = _sla(resolved.sla if resolved is not None else {}, sla_p99_ms, sla_min_rps)
        if redis is not None:
            assert repository is not None and resolved is not None
            from .redis_copy import copy_rows

            host, port = parse_address(redis, REDIS_PORT)
            key_info["copied"] = copy_rows(repository, resolved, columns, host, port)
            pools = [redis_frames(repository.project, resolved.views, columns, entities, t * per_thread * entities,
                                  per_thread) for t in range(threads)]
            socks = conns.open_redis(host, port, connections)
            protocol, id_offset, weights = "redis", -1, redis_weights(resolved.views)
        else:
            cfg = repository.config.server if repository is not None else {}
            host = host or _connectable(cfg.get("host", DEFAULT_HOST))
            port = port or cfg.get("port", SERVER_KEYS["port"][1])
            pools = [fstore_frames(ask.args(), columns, entities, t * per_thread * entities, per_thread)
                     for t in range(threads)]
            socks = conns.open_fstore(host, port, connections, token)
            protocol, id_offset, weights = "fstore", ID_OFFSET, None
    finally:
        if repository is not None:
            repository.close()
    try:
        raw = drive(socks, pools, protocol, Plan(duration, warmup, rate or 0.0, timeout=timeout), id_offset,
                    weights, cpu_of=(host, port))
    finally:
        conns.close(socks)
    result = BenchResult(protocol, f"{host}:{port}", resolved.service if resolved else service,
                         ask.features, model, entities, connections, threads, rate, warmup, raw, sla, key_info,
                         f"compiled ({threads} thread(s), epoll)", notes)
    busy = raw.generator_cpu_s / (raw.measured_s * threads) if raw.measured_s else 0.0
    if busy >= SATURATED:
        result.notes.append(f"the load generator was busy {busy:.0%} of its {threads} thread(s)' time: the figures "
                            "may be its limit; give it more threads (--threads) or cores")
    return result


def _check(entities: int, connections: int, duration: float, warmup: float, rate: float | None, threads: int,
           timeout: float) -> None:
    for name, value, ok in (("--entities", entities, entities >= 1), ("--connections", connections, connections >= 1),
                            ("--duration", duration, duration > 0), ("--warmup", warmup, warmup >= 0),
                            ("--rate", rate, rate is None or rate > 0), ("--threads", threads, threads >= 1),
                            ("timeout", timeout, timeout > 0)):
        if not ok:
            raise InvalidArgument(f"{name} must be {'at least 1' if isinstance(value, int) else 'positive'}, "
                                  f"got {value}")


def _sla(defined: dict[str, Any], p99_ms: float | None, min_rps: float | None) -> Sla:
    """The service's SLA with each bound given on the command line overriding it."""
    sources = []
    if defined:
        sources.append("definitions")
    if p99_ms is not None or min_rps is not None:
        sources.append("command line")
    return Sla(p99_ms if p99_ms is not None else defined.get("p99_ms"),
               min_rps if min_rps is not None else defined.get("min_rps"), " + ".join(sources) or None)


def _connectable(host: str) -> str:
    """An address to connect to a server listening on ``host`` (a wildcard one: loopback)."""
    return DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host
