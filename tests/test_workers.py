"""`modelgate serve --workers N`: N processes accept on one port; the parent supervises them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import openai

from modelgate.simulator import SimulatorThread
from support import gateway_process, openai_sim_config


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def test_two_workers_serve_one_port_and_a_dead_one_is_replaced(sim: SimulatorThread, tmp_path: Path) -> None:
    config = openai_sim_config(sim.base_url, database_url=f"sqlite:///{tmp_path / 'w.db'}",
                               journal_dir=str(tmp_path / "journal"))
    with gateway_process(config, args=["--workers", "2"]) as gateway:
        assert gateway.process is not None
        workers = children(gateway.process.pid)
        assert len(workers) == 2
        client = openai.OpenAI(base_url=gateway.v1, api_key="k", max_retries=0)
        for i in range(10):
            reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"n{i}"}])
            assert reply.choices[0].message.content
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = children(gateway.process.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the dead worker was not replaced: {children(gateway.process.pid)}")
        assert client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "again"}])
        every_worker = workers | children(gateway.process.pid)
    # Stopping the parent stops every worker before it exits.
    assert [pid for pid in every_worker if Path(f"/proc/{pid}").exists()] == []
