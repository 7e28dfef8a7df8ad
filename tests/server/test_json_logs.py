"""``log_format: json``: every line a `modelgate serve` process logs, uvicorn's included, is one JSON
object; a line logged while a request is served names its request id, and where the request is
traced, its trace and span ids."""

from __future__ import annotations

import json
from typing import Any

import httpx

from modelgate.simulator import SimConfig, SimulatorThread
from tests.server.otlp import Receiver
from tests.support import gateway_process, wait_until

MASTER = "mk-logs"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_every_line_is_json_and_request_lines_join_the_request_and_its_trace() -> None:
    receiver = Receiver()
    sim_config = SimConfig.from_dict({"api_key": "sk-sim", "models": {"broken": {"fault": "status=500"}}})
    try:
        with SimulatorThread(sim_config) as sim:
            config: dict[str, Any] = {
                "master_key": MASTER, "log_format": "json", "telemetry": {"otlp_endpoint": receiver.url},
                "providers": {"openai": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim"}},
                "deployments": [{"name": "failover", "strategy": "priority", "retries": 0,
                                 "targets": [{"provider": "openai", "model": "broken"},
                                             {"provider": "openai", "model": "gpt-4o"}]}]}
            with gateway_process(config, args=["--log-level", "info"]) as gateway:
                answer = httpx.post(f"{gateway.v1}/chat/completions", timeout=30, headers={
                    "authorization": f"Bearer {MASTER}", "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
                    json={"model": "failover", "messages": [{"role": "user", "content": "hi"}]})
                assert answer.status_code == 200, answer.text
                request_id = answer.headers["x-request-id"]
                wait_until(lambda: any("trying on" in line for line in gateway.output), what="the failover logged")
                output = list(gateway.output)
    finally:
        receiver.close()
    lines = [line for line in output if line.strip() and not line.startswith("modelgate serving on")]
    parsed = [json.loads(line) for line in lines]  # every line: one JSON object
    assert all({"time", "level", "logger", "message", "pid"} <= set(line) for line in parsed)
    assert any(line["logger"].startswith("uvicorn") for line in parsed)  # the server's own lines too
    (failover,) = [line for line in parsed if "trying on" in line["message"]]
    assert failover["request_id"] == request_id and failover["level"] == "INFO"
    assert failover["trace_id"] == TRACE_ID and len(failover["span_id"]) == 16
    assert not any("request_id" in line for line in parsed if line["logger"].startswith("uvicorn"))
