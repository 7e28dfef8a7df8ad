"""strategy quality-cost on a constructed case whose right answer is known: two scripted models,
the cheap one as good as the dear one on geography and wrong on arithmetic. After an evaluation
run of both, a quality-cost deployment over them sends a geography question to the cheap model and
an arithmetic one to the dear model, and says why in ``x-modelgate-route-reason``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from modelgate.simulator import SimConfig, SimulatorThread
from tests.support import RunningGateway, gateway_in_thread

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Egypt": "Cairo", "Peru": "Lima", "Kenya": "Nairobi",
            "Spain": "Madrid", "Chile": "Santiago"}
SUMS = {"7+5": "12", "9+8": "17", "6+7": "13", "8+8": "16", "5+9": "14", "4+7": "11", "9+6": "15", "3+9": "12"}
ASKED = ("Spain", "Chile", "9+6", "3+9")  # left out of the evaluation: the router has not seen them


def geography(country: str) -> str:
    return f"What is the capital city of {country}?"


def arithmetic(sum_: str) -> str:
    return f"Compute the sum {sum_} and give the number."


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    right = {**{geography(c): a for c, a in CAPITALS.items()}, **{arithmetic(s): a for s, a in SUMS.items()}}
    wrong = {**{geography(c): a for c, a in CAPITALS.items()}, **{arithmetic(s): "42" for s in SUMS}}
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {"dear": {"answers": right},
                                                                  "cheap": {"answers": wrong}}})
    with SimulatorThread(config) as simulator:
        yield simulator


def config(sim: SimulatorThread, tmp_path: Path, **router: Any) -> dict[str, Any]:
    return {"database_url": f"sqlite:///{tmp_path / 'gw.db'}", "journal_dir": str(tmp_path / "journal"),
            "providers": {"sim": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim"}},
            "deployments": [
                {"name": "dear", "provider": "sim", "model": "dear", "input_price": 10, "output_price": 30},
                {"name": "cheap", "provider": "sim", "model": "cheap", "input_price": 0.1, "output_price": 0.3},
                {"name": "router", "strategy": "quality-cost",
                 "targets": [{"deployment": "dear"}, {"deployment": "cheap"}], **router}]}


def evaluate(sim: SimulatorThread, tmp_path: Path) -> None:
    items = [{"input": geography(c), "expected": a, "tags": ["geo"]} for c, a in CAPITALS.items() if c not in ASKED]
    items += [{"input": arithmetic(s), "expected": a, "tags": ["math"]} for s, a in SUMS.items() if s not in ASKED]
    data = tmp_path / "data.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(item) for item in items))
    path = tmp_path / "eval.yaml"
    path.write_bytes(orjson.dumps(config(sim, tmp_path, evidence=["evidence"])))  # JSON is YAML
    done = subprocess.run([sys.executable, "-m", "modelgate", "eval", "run", str(data), "--config", str(path),
                           "--deployments", "dear,cheap", "--scorers", "exact", "--name", "evidence"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def ask(gateway: RunningGateway, question: str) -> httpx.Response:
    answer = httpx.post(f"{gateway.v1}/chat/completions", timeout=30,
                        json={"model": "router", "messages": [{"role": "user", "content": question}]})
    assert answer.status_code == 200, answer.text
    return answer


def test_the_cheap_model_where_it_is_as_good_the_dear_one_where_it_is_not(sim: SimulatorThread,
                                                                          tmp_path: Path) -> None:
    evaluate(sim, tmp_path)
    with gateway_in_thread(config(sim, tmp_path, evidence=["evidence"], max_quality_drop=0.05)) as gateway:
        for country in ("Spain", "Chile"):
            answer = ask(gateway, geography(country))
            assert answer.headers["x-modelgate-model"] == "cheap", answer.headers["x-modelgate-route-reason"]
            reason = answer.headers["x-modelgate-route-reason"]
            assert "8 nearest evaluated items" in reason and "chose cheap" in reason
            assert "dear 1.000" in reason and "cheap 1.000" in reason
        for sum_ in ("9+6", "3+9"):
            answer = ask(gateway, arithmetic(sum_))
            assert answer.headers["x-modelgate-model"] == "dear", answer.headers["x-modelgate-route-reason"]
            assert "chose dear" in answer.headers["x-modelgate-route-reason"]


def test_without_its_evidence_it_routes_cheapest_first_and_says_so(sim: SimulatorThread, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    with gateway_in_thread(config(sim, tmp_path, evidence=["never-run"])) as gateway:
        answer = ask(gateway, geography("Spain"))
        assert answer.headers["x-modelgate-model"] == "cheap"
        assert "no evaluated item" in answer.headers["x-modelgate-route-reason"]
    assert any("no evaluation run 'never-run'" in r.getMessage() for r in caplog.records)


def test_a_quality_cost_deployment_needs_evidence_and_named_targets(sim: SimulatorThread, tmp_path: Path) -> None:
    from modelgate.config import ConfigError, parse_settings

    body = config(sim, tmp_path)
    with pytest.raises(ConfigError, match=r"evidence.*is required by strategy quality-cost"):
        parse_settings(body, {}, source="test")
    body["deployments"][2] = {"name": "router", "strategy": "quality-cost", "evidence": ["r"],
                              "targets": [{"provider": "sim", "model": "dear"}, {"deployment": "nope"}]}
    with pytest.raises(ConfigError) as refused:
        parse_settings(body, {}, source="test")
    said = str(refused.value)
    assert "names a deployment ({deployment: NAME})" in said and "'nope' is not another deployment" in said


MORE_CAPITALS = {"Norway": "Oslo", "Greece": "Athens", "Cuba": "Havana", "Ghana": "Accra", "Iran": "Tehran",
                 "Nepal": "Kathmandu", "Poland": "Warsaw", "Qatar": "Doha", "Sudan": "Khartoum", "Yemen": "Sanaa",
                 "Iraq": "Baghdad", "Laos": "Vientiane"}


def test_eval_router_measures_savings_and_quality_on_held_out_items(tmp_path: Path) -> None:
    capitals = {**CAPITALS, **MORE_CAPITALS}
    sums = {f"{a}+{b}": str(a + b) for a in range(2, 7) for b in range(3, 7)}
    right = {**{geography(c): a for c, a in capitals.items()}, **{arithmetic(s): a for s, a in sums.items()}}
    wrong = {**{geography(c): a for c, a in capitals.items()}, **{arithmetic(s): "42" for s in sums}}
    sim_config = SimConfig.from_dict({"api_key": "sk-sim", "models": {"dear": {"answers": right},
                                                                      "cheap": {"answers": wrong}}})
    items = [{"input": geography(c), "expected": a} for c, a in capitals.items()]
    items += [{"input": arithmetic(s), "expected": a} for s, a in sums.items()]
    data = tmp_path / "tasks.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(item) for item in items))
    with SimulatorThread(sim_config) as simulator:
        path = tmp_path / "modelgate.yaml"
        path.write_bytes(orjson.dumps(config(simulator, tmp_path, evidence=["unused"], max_quality_drop=0.02)))
        done = subprocess.run([sys.executable, "-m", "modelgate", "eval", "router", str(data), "--config", str(path),
                               "--deployment", "router", "--holdout", "0.3", "--json"],
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    study = orjson.loads(done.stdout)
    assert study["held_out_items"] == 12 and study["evidence_items"] == 28
    assert (study["best"], study["cheapest"]) == ("dear", "cheap")
    policies = {p["policy"]: p for p in study["policies"]}
    assert policies["always best"]["quality"] == 1.0 and policies["always cheapest"]["quality"] < 1.0
    # The router asks the cheap model the geography and the dear one the arithmetic: the best's
    # quality for less.
    assert policies["router"]["quality"] == 1.0 and study["quality_change"]["mean"] == 0.0
    assert 0 < policies["router"]["cost"] < policies["always best"]["cost"]
    assert study["savings"]["share"] > 0.2 and study["savings"]["interval"][0] > 0
    assert set(policies["router"]["picks"]) == {"dear", "cheap"}
