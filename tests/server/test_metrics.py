"""``GET /metrics``: the GenAI client metrics and modelgate's own, in Prometheus' text format,
parsed with prometheus_client's parser after a known load, compared with the usage report (the
metrics count from the same records as the bill); with the master key, or without a key on
``telemetry.metrics_port``; and with two workers, every request counted once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelgate.simulator import SimConfig, SimulatorThread
from tests.support import RunningGateway, gateway_in_thread, gateway_process, wait_until

MASTER = "mk-metrics"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metrics_sim() -> Iterator[SimulatorThread]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {"broken": {"fault": "status=500"}}})
    with SimulatorThread(config) as simulator:
        yield simulator


def config(sim: SimulatorThread, **extra: Any) -> dict[str, Any]:
    v1 = f"{sim.base_url}/v1"
    return {
        "master_key": MASTER,
        "providers": {"openai": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "openai"},
                      "xai": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "xai"},
                      "anthropic": {"type": "anthropic", "base_url": sim.base_url, "api_key": "sk-sim"}},
        "deployments": [{"name": "gpt-4o", "provider": "openai", "model": "gpt-4o"},
                        {"name": "grok", "provider": "xai", "model": "grok-3"},
                        {"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5"},
                        {"name": "broken", "provider": "openai", "model": "broken"},
                        {"name": "embed", "provider": "openai", "model": "text-embedding-3-small"}],
        **extra,
    }


def scrape(text: str) -> Samples:
    """Every sample, by name and labels (empty label values dropped, as Prometheus reads them)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset((k, v) for k, v in sample.labels.items() if v != "")
            out[(sample.name, labels)] = sample.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (found, have), value in samples.items() if found == name and wanted <= have)


def metrics(gateway: RunningGateway, key: str = MASTER) -> httpx.Response:
    return httpx.get(f"{gateway.base_url}/metrics", headers={"authorization": f"Bearer {key}"}, timeout=30)


def usage(gateway: RunningGateway) -> list[dict[str, Any]]:
    response = httpx.get(f"{gateway.base_url}/admin/usage", params={"group_by": "deployment"},
                         headers={"authorization": f"Bearer {MASTER}"}, timeout=30)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_counts_after_a_known_load_agree_with_the_usage_report(metrics_sim: SimulatorThread,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "modelgate.telemetry")
    with gateway_in_thread(config(metrics_sim, telemetry={"metrics_port": 0})) as gateway:
        said = next(r.getMessage() for r in caplog.records if "metrics without a key" in r.getMessage())
        port = int(said.split("http://0.0.0.0:", 1)[1].split("/", 1)[0])
        client = openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0)
        limited = httpx.post(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER}"},
                             json={"project": "team-a", "rpm": 1}).json()["key"]
        team = openai.OpenAI(base_url=gateway.v1, api_key=limited, max_retries=0)
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello there"}])
        for chunk in client.chat.completions.create(model="grok", messages=[{"role": "user", "content": "Stream"}],
                                                    stream=True, stream_options={"include_usage": True}):
            assert chunk is not None
        client.embeddings.create(model="embed", input="some words")
        httpx.post(f"{gateway.base_url}/v1/messages", headers={"x-api-key": MASTER, "anthropic-version": "2023-06-01"},
                   json={"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]})
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "Hi"}])
        team.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "one"}])
        with pytest.raises(openai.RateLimitError):
            team.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "two"}])

        answer = metrics(gateway)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = scrape(answer.text)
        requests = "modelgate_requests_total"
        assert total(samples, requests) == 9
        assert total(samples, requests, deployment="gpt-4o", status_class="2xx") == 4
        assert total(samples, requests, deployment="gpt-4o", status_class="4xx", project="team-a") == 1
        assert total(samples, requests, deployment="grok", surface="chat", provider="xai") == 1
        assert total(samples, requests, deployment="claude", surface="messages") == 1
        assert total(samples, requests, deployment="embed", surface="embeddings") == 1
        assert total(samples, requests, deployment="broken", status_class="5xx") == 1
        assert total(samples, "modelgate_refusals_total", deployment="gpt-4o", reason="rate_limit",
                     project="team-a") == 1
        # The GenAI metrics: one operation per request that reached a provider (the refusal did not).
        duration = "gen_ai_client_operation_duration_seconds_count"
        assert total(samples, duration) == 8
        assert total(samples, duration, gen_ai_operation_name="embeddings") == 1
        assert total(samples, duration, gen_ai_provider_name="x_ai", gen_ai_request_model="grok",
                     gen_ai_response_model="grok-3") == 1
        assert total(samples, duration, gen_ai_request_model="broken", error_type="5xx") == 1
        assert total(samples, "gen_ai_client_operation_time_to_first_chunk_seconds_count") == 1  # the stream
        assert total(samples, "modelgate_requests_in_flight") == 0
        # The gateway's own time: one observation per request that reached a provider, each a part
        # of that request's duration.
        assert total(samples, "modelgate_gateway_overhead_seconds_count") == 8
        assert 0 < total(samples, "modelgate_gateway_overhead_seconds_sum") < \
            total(samples, "gen_ai_client_operation_duration_seconds_sum")
        assert total(samples, "modelgate_breaker_state", provider="openai", model="gpt-4o") == 0
        # Tokens and cost: the same figures as the usage report's.
        # The report reads the database, which the records reach a moment after the metrics.
        wait_until(lambda: sum(row["requests"] for row in usage(gateway)) == 9, what="the records written")
        report = {row["deployment"]: row for row in usage(gateway)}
        for deployment, row in report.items():
            assert total(samples, "modelgate_tokens_total", deployment=deployment, kind="input") == \
                row["input_tokens"], deployment
            assert total(samples, "modelgate_tokens_total", deployment=deployment, kind="output") == \
                row["output_tokens"], deployment
            assert total(samples, "modelgate_cost_usd_total", deployment=deployment) == \
                pytest.approx(row["cost"], abs=1e-9), deployment
        assert total(samples, "gen_ai_client_token_usage_sum", gen_ai_request_model="gpt-4o",
                     gen_ai_token_type="input") == report["gpt-4o"]["input_tokens"]

        # A project key may not read them; the metrics port needs no key and gives the same figures.
        refused = metrics(gateway, limited)
        assert refused.status_code == 403 and "master key" in refused.json()["error"]["message"]
        direct = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
        assert direct.status_code == 200
        assert total(scrape(direct.text), requests) == 9
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=30).status_code == 404


def test_no_key_id_request_id_or_client_text_becomes_a_label(metrics_sim: SimulatorThread) -> None:
    with gateway_in_thread(config(metrics_sim)) as gateway:
        client = openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0)
        secret = "user-text-that-must-not-leak"
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": secret}],
                                       user=secret, extra_headers={"x-request-id": "req-from-client"})
        text = metrics(gateway).text
        assert secret not in text and "req-from-client" not in text and "master" not in text
        assert "gpt-4o" in text


def test_two_workers_count_every_request_once(metrics_sim: SimulatorThread, tmp_path: Path) -> None:
    settings = config(metrics_sim, database_url=f"sqlite:///{tmp_path / 'w.db'}", journal_dir=str(tmp_path / "j"))
    with gateway_process(settings, args=["--workers", "2"]) as gateway:
        sent = 40
        for _ in range(sent):  # a new connection each: the kernel spreads them over the workers
            with httpx.Client(timeout=30) as fresh:
                answer = fresh.post(f"{gateway.v1}/chat/completions", headers={"authorization": f"Bearer {MASTER}"},
                                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
                assert answer.status_code == 200, answer.text
        counted = sent

        def all_counted() -> bool:
            with httpx.Client(timeout=30) as fresh:  # whichever worker answers the scrape
                text = fresh.get(f"{gateway.base_url}/metrics", headers={"authorization": f"Bearer {MASTER}"}).text
            return total(scrape(text), "modelgate_requests_total", deployment="gpt-4o") == counted

        # Every worker answers the same total, not its own share (once each has written its last
        # second's figures: a scrape may miss up to a second of the other workers' requests).
        wait_until(lambda: all(all_counted() for _ in range(6)), 30, f"{counted} requests counted over both workers")

