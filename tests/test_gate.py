"""The benchmark gate (benchmarks/gate): it fails when the read path is made slower on purpose,
and its verdicts follow from the numbers it measured. No timing is asserted here except the
deliberate one: a busy-wait of 50 us per read (about 10-25x a 1-entity read on this machine
kind) must take the read ratio below its threshold."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from benchmarks.gate.__main__ import micro_pairs
from benchmarks.gate.ratios import CONFIG, MIN_MARGIN, calibrate, load_config, micro_ratios, render, verdicts
from benchmarks.gate.serving import PAIRS as SERVING_PAIRS
from fstore.online.service import SLOWDOWN_ENV

ROOT = Path(__file__).resolve().parents[1]
SLOWDOWN_US = 50


def gate(work: Path, out: Path, slowdown_us: int | None) -> tuple[int, dict[str, Any], str]:
    """A short gate run of the 1-entity read alone; (exit code, its JSON, its output)."""
    env = {k: v for k, v in os.environ.items() if k != SLOWDOWN_ENV}
    if slowdown_us is not None:
        env[SLOWDOWN_ENV] = str(slowdown_us)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gate", "--only", "read_1", "--passes", "1",
                           "--max-time", "0.2", "--work", str(work), "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json.loads(out.read_text()), proc.stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gate")  # the data is made by the first run, reused by the second


def test_a_slower_read_path_fails_the_gate(work: Path) -> None:
    code, result, out = gate(work, work / "slow.json", SLOWDOWN_US)
    assert code == 1, out
    assert result["slowdown_us"] == str(SLOWDOWN_US) and not result["ok"]
    (row,) = result["verdicts"]
    assert row["name"] == "read_1" and row["problem"] == "below threshold", row
    assert row["ratio"] < row["threshold"]
    assert "FAIL" in out and "read_1" in out


def test_without_the_slowdown_the_verdict_follows_from_the_measured_ratio(work: Path) -> None:
    code, result, out = gate(work, work / "plain.json", None)
    assert result["slowdown_us"] is None
    raw = json.loads((work / "pytest-benchmark.json").read_text())
    (fstore,) = [b["stats"] for b in raw["benchmarks"] if b["name"] == "test_read_1_fstore[pass0]"]
    (floor,) = [b["stats"] for b in raw["benchmarks"] if b["name"] == "test_read_1_floor[pass0]"]
    statistic = load_config()["gate"]["statistic"]
    ratio = floor[statistic] / fstore[statistic]
    assert result["ratios"] == {"read_1": pytest.approx(ratio)}
    (row,) = result["verdicts"]
    threshold = load_config()["ratios"]["read_1"]["threshold"]
    assert row["threshold"] == threshold and row["ok"] == (ratio >= threshold)
    assert code == (0 if row["ok"] else 1), out
    slowed = work / "slow.json"
    if slowed.exists():  # the deliberate x10: the same pair, far lower
        assert json.loads(slowed.read_text())["ratios"]["read_1"] < ratio


def _bench(name: str, minimum: float, median: float) -> dict[str, Any]:
    return {"name": name, "stats": {"min": minimum, "median": median, "mean": median}}


def test_ratios_are_floor_over_fstore_per_pass_then_the_median() -> None:
    raw = {"benchmarks": [_bench("test_read_1_fstore[pass0]", 2.0, 3.0), _bench("test_read_1_floor[pass0]", 1.0, 1.5),
                          _bench("test_read_1_floor[pass1]", 1.2, 2.0), _bench("test_read_1_fstore[pass1]", 2.0, 2.0),
                          _bench("test_read_1_fstore[pass2]", 1.0, 1.0), _bench("test_read_1_floor[pass2]", 1.0, 1.0),
                          _bench("test_decode_1000_fstore[pass0]", 1.0, 1.0)]}  # no floor: left out
    got = micro_ratios(raw, "min")
    assert set(got) == {"read_1"}
    assert got["read_1"]["values"] == pytest.approx([0.5, 0.6, 1.0]) and got["read_1"]["ratio"] == pytest.approx(0.6)
    assert micro_ratios(raw, "median")["read_1"]["values"] == pytest.approx([0.5, 1.0, 1.0])


def test_verdicts_fail_below_the_threshold_and_without_one() -> None:
    config = {"ratios": {"a": {"threshold": 0.5}, "b": {"threshold": 1.0}, "gone": {"threshold": 1.0}}}
    rows = {r["name"]: r for r in verdicts({"a": 0.5, "b": 0.99, "new": 3.0}, config)}
    assert rows["a"]["ok"] and not rows["b"]["ok"] and rows["b"]["problem"] == "below threshold"
    assert rows["new"]["problem"] == "no threshold in gate.toml"
    assert rows["gone"]["problem"] == "not measured"
    assert "gone" not in {r["name"] for r in verdicts({"a": 0.7}, config, complete=False)}


def test_calibration_takes_the_median_minus_the_spread_of_the_runs() -> None:
    runs = [{"a": v, "b": 2.0} for v in (0.8, 0.7, 0.9, 0.85, 0.75)]
    got = calibrate(runs)
    assert got["a"] == {"threshold": pytest.approx(0.6), "median": 0.8, "min": 0.7, "max": 0.9,
                        "margin": pytest.approx(0.2), "runs": 5}
    assert got["b"]["threshold"] == pytest.approx(2.0 * (1 - MIN_MARGIN))  # no spread: the minimum margin
    text = render(CONFIG.read_text().split("\n[gate]")[0], load_config(), got, ["2026-01-01T00:00"] * 5, [1.0] * 5)
    parsed = tomllib.loads(text)
    assert parsed["ratios"]["a"]["threshold"] == pytest.approx(0.6) and parsed["gate"] == load_config()["gate"]
    assert "median 0.8" in parsed["ratios"]["a"]["reason"]
    for name, entry in load_config()["ratios"].items():  # ratios the runs did not measure keep their entries
        assert parsed["ratios"][name] == entry


def test_rewriting_the_config_with_nothing_recalibrated_changes_nothing() -> None:
    header = CONFIG.read_text().split("\n[gate]")[0]
    assert tomllib.loads(render(header, load_config(), {}, ["2026-01-01T00:00"], [1.0])) == load_config()


def test_every_ratio_of_the_gate_has_a_threshold_and_its_reason() -> None:
    config = tomllib.loads(CONFIG.read_text())
    names = set(micro_pairs()) | set(SERVING_PAIRS)
    assert names == set(config["ratios"])
    for name in names:
        entry = config["ratios"][name]
        c = entry["calibration"]
        assert c["runs"] >= 5 and entry["what"] and "median" in entry["reason"]
        assert entry["threshold"] == pytest.approx(c["median"] - c["margin"], abs=0.002)
        assert c["margin"] >= c["max"] - c["min"] - 0.002
