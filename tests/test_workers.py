"""`modelgate serve --workers N`: N processes accept on one port; the parent supervises them."""

from __future__ import annotations

import os
import signal
import socket
from contextlib import AbstractContextManager
from pathlib import Path

import openai

from modelgate.simulator import SimulatorThread
from tests.support import RunningGateway, gateway_process, openai_sim_config, wait_until


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


def two_workers(sim: SimulatorThread, tmp_path: Path) -> AbstractContextManager[RunningGateway]:
    config = openai_sim_config(sim.base_url, database_url=f"sqlite:///{tmp_path / 'w.db'}",
                               journal_dir=str(tmp_path / "journal"))
    return gateway_process(config, args=["--workers", "2"])


def test_two_workers_serve_one_port_and_a_dead_one_is_replaced(sim: SimulatorThread, tmp_path: Path) -> None:
    with two_workers(sim, tmp_path) as gateway:
        assert gateway.process is not None
        workers = children(gateway.process.pid)
        assert len(workers) == 2
        client = openai.OpenAI(base_url=gateway.v1, api_key="k", max_retries=0)
        for i in range(10):
            reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"n{i}"}])
            assert reply.choices[0].message.content
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        pid = gateway.process.pid
        wait_until(lambda: len(now := children(pid)) == 2 and victim not in now, 30, "the dead worker replaced")
        assert client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "again"}])
        every_worker = workers | children(gateway.process.pid)
    # Stopping the parent stops every worker before it exits.
    assert [pid for pid in every_worker if Path(f"/proc/{pid}").exists()] == []


def _client_connections(pid: int, port: int, state: str = "01") -> int:
    """Connections to ``port`` in ``state`` (01: established, 0A: listening) whose socket the
    process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == state and fields[9] in inodes:
                count += 1
    return count


def test_a_burst_of_connections_is_spread_over_the_workers(sim: SimulatorThread, tmp_path: Path) -> None:
    with two_workers(sim, tmp_path) as gateway:
        assert gateway.process is not None
        workers = sorted(children(gateway.process.pid))
        port = int(gateway.v1.rsplit(":", 1)[1].split("/")[0])
        # A worker that has not yet bound its socket takes no part in the spread: wait for both.
        wait_until(lambda: all(_client_connections(pid, port, "0A") for pid in workers), 30,
                   "both workers listening")
        # 32 connections opened at once, as a load balancer or a pooled client does, each kept open.
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        try:
            for c in conns:
                c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            for c in conns:
                assert c.recv(4096).startswith(b"HTTP/1.1 200")
            held = [_client_connections(pid, port) for pid in workers]
        finally:
            for c in conns:
                c.close()
    assert sum(held) == 32
    # The kernel hashes connections over the workers' sockets: fewer than 4 of 32 on one worker
    # has a probability of about 1e-5; a single shared socket typically gave one worker all 32.
    assert min(held) >= 4, held
