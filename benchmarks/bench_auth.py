"""``bench_server.py --auth-compare``: the cost of an auth token and of TLS, in one run (issue 9).

Four ``fstore serve`` processes on the same data (the benchmark repository's registry and
stores, each under its own fstore.yaml), all pinned to the server core(s), started once:

* ``plain``: no token, no TLS;
* ``token``: ``server.auth.tokens`` with one read token; the client sends it in HELLO;
* ``tls``: ``server.tls`` with a self-signed certificate made here with ``openssl``;
* ``tls+token``: both.

The load generator is bench_server.py's closed loop (``AsyncClient``, ``C`` connections,
``--warmup`` discarded, ``--seconds`` timed) with the token and a TLS context when the case
needs them. For each (entities per request, connections) the cases run in turn, ``--rounds``
times, the order rotated each round so a burst of noise from other processes does not
always hit the same case; each case's figures are the medians over the rounds, and its
ratios are to ``plain`` of the same round, then the median. The token is checked once per
connection (in HELLO), so its cost per request should be nil; TLS costs an encryption and
a decryption per request and reply on both sides.

Before timing, one GET of 100 entities through each server must equal the same GET through
the plain one (values and statuses).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

TOKEN_ENV = "FSTORE_BENCH_TOKEN"
TOKEN = "bench-token-" + os.urandom(8).hex()
CASES = [("plain", False, False), ("token", True, False), ("tls", False, True), ("tls+token", True, True)]


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "server.pem", folder / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def case_repo(work: Path, repo: Path, name: str, token: bool, tls: tuple[Path, Path] | None) -> Path:
    """A repository folder whose fstore.yaml points at ``repo``'s registry and stores."""
    conf = yaml.safe_load((repo / "fstore.yaml").read_text()) or {}
    conf["registry"] = str(repo / conf.get("registry", "data/registry.json"))
    for section, default in (("offline_store", "data/offline"), ("online_store", "data/online")):
        conf[section] = dict(conf.get(section) or {})
        conf[section]["path"] = str(repo / conf[section].get("path", default))
    server = dict(conf.get("server") or {})
    if token:
        server["auth"] = {"tokens": [{"name": "bench", "scopes": ["read"], "secret_env": TOKEN_ENV}]}
    if tls is not None:
        server["tls"] = {"cert": str(tls[0]), "key": str(tls[1])}
    conf["server"] = server
    folder = work / "auth_compare" / name.replace("+", "_")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fstore.yaml").write_text(yaml.safe_dump(conf))
    return folder


def client_args(token: bool, tls: bool, ca: Path) -> dict[str, Any]:
    """What a case's AsyncClient needs, picklable (a context is built in each load process)."""
    return {"token": TOKEN if token else None, "tls_ca": str(ca) if tls else None}


def same_replies(ports: dict[str, int], kw: dict[str, dict], refs: list[str], ids: list[int], key: str) -> list[str]:
    """Problems: a case whose reply to one GET of ``ids`` differs from the plain server's."""
    from fstore.client import AsyncClient
    from fstore.serving.tls import client_context

    async def one(name: str) -> Any:
        ssl = client_context(kw[name]["tls_ca"]) if kw[name]["tls_ca"] else None
        async with AsyncClient("127.0.0.1", ports[name], timeout=30, token=kw[name]["token"], ssl=ssl) as c:
            got = await c.get_online_features(refs, entity_rows={key: ids})
            return got.to_dict(include_metadata=True)

    want = asyncio.run(one("plain"))
    return [f"{name}: replies differ from the plain server's" for name in ports if asyncio.run(one(name)) != want]


def run_auth_compare(bs: Any, args: Any, repo: Path, refs: list[str], ids: Any, server_cpus: list[int],
                     client_cpus: list[int], work: Path, result: dict) -> int:
    """The comparison; ``bs`` is the bench_server module (its servers, load generator, summaries)."""
    if shutil.which("openssl") is None:
        raise SystemExit("--auth-compare needs the openssl command line (for a test certificate)")
    cert = make_cert(work / "auth_compare" / "tls")
    env = dict(os.environ, **{TOKEN_ENV: TOKEN})
    src = Path(args.fstore_src or bs.REPO_ROOT).resolve()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    servers: dict[str, Any] = {}
    ports: dict[str, int] = {}
    kw: dict[str, dict] = {}
    try:
        from fstore.client import wait_until_ready
        from fstore.serving.tls import client_context

        for name, token, tls in CASES:
            folder = case_repo(work, repo, name, token, cert if tls else None)
            port = bs.free_port()
            cmd = [bs.sys.executable, "-m", "fstore.cli", "-r", str(folder), "serve", "--host", bs.HOST,
                   "--port", str(port), "--workers", str(args.workers)]
            servers[name] = bs.Proc(f"fstore-{name}", cmd, server_cpus, work / f"fstore-{name}-{port}.log", cwd=src,
                                    env=env)
            ports[name], kw[name] = port, client_args(token, tls, cert[0])
            try:
                wait_until_ready(bs.HOST, port, timeout=60, token=kw[name]["token"],
                                 ssl=client_context(str(cert[0])) if tls else None)
            except TimeoutError:
                raise RuntimeError(f"fstore serve ({name}) did not become ready:\n{servers[name].logs()}") from None
        problems = same_replies(ports, kw, refs, ids[:100].tolist(), bs.KEY_COL)
        result["check"] = {"ok": not problems, "problems": problems}
        if problems:
            for line in problems:
                bs.log("MISMATCH " + line)
            return 3
        if not args.no_prefault:
            result["prefault"] = bs.prefault_server(ports["plain"], ids.tolist(), refs)
        result["auth_compare"] = measure(bs, args, servers, ports, kw, refs, ids, server_cpus, client_cpus)
    finally:
        for proc in servers.values():
            proc.stop()
    print_compare(result["auth_compare"])
    return 0


def measure(bs: Any, args: Any, servers: dict[str, Any], ports: dict[str, int], kw: dict[str, dict], refs: list[str],
            ids: Any, server_cpus: list[int], client_cpus: list[int]) -> list[dict]:
    shapes = [int(x) for x in args.entities.split(",") if x.strip()]
    conn_list = [int(x) for x in args.connections.split(",") if x.strip()]
    server_cores, client_cores = min(args.workers, len(server_cpus)), min(args.client_procs, len(client_cpus))
    out = []
    for per_req in shapes:
        batches = bs.make_batches(ids, per_req, 100_000 if per_req == 1 else 200_000, bs.SEED + 41 + per_req)
        for conns in conn_list:
            runs: dict[str, list[dict]] = {name: [] for name, _, _ in CASES}
            for rnd in range(args.rounds):
                order = CASES[rnd % len(CASES):] + CASES[:rnd % len(CASES)]
                for name, _, _ in order:
                    cfg = {"target": "fstore", "host": bs.HOST, "port": ports[name], "server_pid": servers[name].pid,
                           "per_request": per_req, "connections": conns, "warmup": args.warmup,
                           "seconds": args.seconds, "max_requests": args.max_requests, "timeout": args.timeout,
                           "refs": refs, "metadata": args.metadata, "batches": batches, **kw[name]}
                    r = bs.summarize(name, per_req, conns, bs.run_load(cfg, args.client_procs), server_cores,
                                     client_cores)
                    runs[name].append(r)
                    bs.log(f"round {rnd + 1}: {name:9s} {per_req:3d} entities x {conns:3d} conns: "
                           f"{r['requests_per_s']:>9,.0f} req/s p99 {r['p99_ms']:.3f} ms, server "
                           f"{r['server_cpu_us_per_request']:.1f} us/req ({r['bound']})")
            out.append(summarize_cases(per_req, conns, runs))
    return out


def summarize_cases(per_req: int, conns: int, runs: dict[str, list[dict]]) -> dict:
    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    def ratio(name: str, key: str) -> float | None:
        """The median over rounds of name's value / plain's. A round whose plain value is 0 is
        left out, said on stderr: on a loaded machine the server's CPU time can read 0 (no
        tick of it sampled in the window). None when no round is left."""
        pairs = list(zip(runs[name], runs["plain"]))
        kept = [a[key] / b[key] for a, b in pairs if b[key] > 0]
        if len(kept) < len(pairs):
            print(f"bench_auth: {per_req} entities x {conns} conns, {name}: plain's {key} was 0 in "
                  f"{len(pairs) - len(kept)} of {len(pairs)} rounds (its CPU time not sampled: is the machine "
                  f"loaded?); {'those rounds are left out of' if kept else 'no'} {name}'s {key} ratio",
                  file=sys.stderr)
        return statistics.median(kept) if kept else None

    cases = {name: {"requests_per_s": med(name, "requests_per_s"), "p50_ms": med(name, "p50_ms"),
                    "p99_ms": med(name, "p99_ms"), "server_cpu_us_per_request": med(name, "server_cpu_us_per_request"),
                    "bounds": [r["bound"] for r in runs[name]], "rounds": runs[name]} for name in runs}
    ratios = {name: {"throughput_ratio": ratio(name, "requests_per_s"), "p99_ratio": ratio(name, "p99_ms"),
                     "server_cpu_ratio": ratio(name, "server_cpu_us_per_request")} for name in runs if name != "plain"}
    return {"entities_per_request": per_req, "connections": conns, "cases": cases, "vs_plain": ratios}


def times(x: float | None) -> str:
    """A ratio as printed: "n/a" when every round's plain value was 0 (see summarize_cases)."""
    return "n/a" if x is None else f"{x:.3f}x"


def print_compare(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="auth token and TLS against plain (medians over rounds; ratios to plain of the same round)")
    for col in ("entities/req", "conns", "case", "req/s", "p50 ms", "p99 ms", "server CPU us/req", "req/s vs plain",
                "p99 vs plain", "CPU/req vs plain"):
        t.add_column(col, justify="left" if col == "case" else "right")
    for row in rows:
        for name, c in row["cases"].items():
            v = row["vs_plain"].get(name)
            t.add_row(str(row["entities_per_request"]), str(row["connections"]), name, f"{c['requests_per_s']:,.0f}",
                      f"{c['p50_ms']:.3f}", f"{c['p99_ms']:.3f}", f"{c['server_cpu_us_per_request']:.1f}",
                      *(times(v[k]) if v else "" for k in ("throughput_ratio", "p99_ratio", "server_cpu_ratio")))
    Console(width=140).print(t)
