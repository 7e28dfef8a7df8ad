"""The Grafana dashboard in docs/observability/ asks only for metrics the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from modelgate.telemetry.gateway import GatewayMetrics
from modelgate.telemetry.metrics import Registry

ROOT = Path(__file__).resolve().parents[2]
GAUGES = {"modelgate_requests_in_flight", "modelgate_target_requests_in_flight", "modelgate_breaker_state",
          "modelgate_usage_queue_records", "modelgate_usage_journal_backlog_segments",
          "modelgate_usage_quarantined_records"}  # server/telemetry.py reads them from the running parts


def test_every_query_names_an_exported_metric() -> None:
    dashboard = json.loads((ROOT / "docs" / "observability" / "grafana-dashboard.json").read_text())
    registry = Registry()
    GatewayMetrics(registry, {})
    exported = set(registry.families) | GAUGES
    labels = {label for family in registry.families.values() for label in family.labels}
    asked = {re.sub(r"_(bucket|sum|count)$", "", name) for panel in dashboard["panels"]
             for target in panel["targets"] for name in re.findall(r"\b(?:modelgate|gen_ai)_\w+", target["expr"])
             if name not in labels}
    assert asked and asked <= exported, asked - exported
    server = (ROOT / "src" / "modelgate" / "server" / "telemetry.py").read_text()
    assert all(f'"{gauge}"' in server for gauge in GAUGES)
