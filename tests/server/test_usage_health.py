"""What the usage recorder did is in the master key's health report: records written, journal
segments waiting for the database, and records set aside in the quarantine file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from modelgate.simulator import SimulatorThread
from tests.metering.test_refused_records import poisoned_segment
from tests.services import upgrade
from tests.support import gateway_in_thread, openai_sim_config, wait_until

MASTER = "mk-usage-health"


def test_the_health_report_counts_what_the_recorder_set_aside(sim: SimulatorThread, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'modelgate.db'}"
    installation = asyncio.run(upgrade(url))
    journal = tmp_path / "journal"
    # A segment left by an ended gateway: three records, three lines that are no records.
    poisoned_segment(journal / installation)
    config = openai_sim_config(sim.base_url, master_key=MASTER, database_url=url, journal_dir=str(journal))
    with gateway_in_thread(config) as gateway:
        def usage() -> dict[str, object]:
            report = httpx.get(f"{gateway.base_url}/health/deployments",
                               headers={"authorization": f"Bearer {MASTER}"}, timeout=10)
            assert report.status_code == 200, report.text
            return dict(report.json()["usage"])

        wait_until(lambda: usage()["written"] == 3, what="the three records of the segment written")
        found = usage()
        assert (found["quarantined"], found["backlog"]) == (3, 0)
        aside = Path(str(found["quarantine_file"]))
        assert aside.parent == journal / installation and len(aside.read_text().splitlines()) == 3
