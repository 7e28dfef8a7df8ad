"""The portal's Evaluations page in chromium (the fixtures of test_browser.py), on a gateway whose
database `modelgate eval run` writes from another process: the empty state, a finished run's row,
its summary per deployment and per tag with the numbers the scripted models make, its results as
text, the dataset's leaderboard; and a run in progress, seen running and then done without a
reload. No console error on the way."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from modelgate.simulator import SimConfig, SimulatorThread
from tests.portal.test_browser import XSS, Page, browser  # noqa: F401  (browser: the fixture)
from tests.support import RunningGateway, gateway_in_thread, wait_until

MASTER = "mk-evals-page"
SCRIPTS = {"strong": {"capital of France": "Paris", "2+2": "4"},
           # Its wrong answer is markup: the page must show it as text.
           "weak": {"capital of France": f"{XSS} Lyon", "2+2": "The answer is 4"}}
ITEMS = [{"id": "capital", "input": "What is the capital of France?", "expected": "Paris", "tags": ["geo"]},
         {"id": "sum", "input": "What is 2+2?", "expected": "4", "tags": ["math"]}]


@dataclass
class Evals:
    gateway: RunningGateway
    folder: Path
    config: Path

    def run(self, name: str, deployments: str, items: list[dict[str, Any]], *,
            wait: bool = True) -> subprocess.Popen[str]:
        """`modelgate eval run` of ``items`` in its own process, on the gateway's database."""
        data = self.folder / f"{name}.jsonl"
        data.write_bytes(b"\n".join(orjson.dumps(item) for item in items) + b"\n")
        process = subprocess.Popen(
            [sys.executable, "-m", "modelgate", "eval", "run", str(data), "--config", str(self.config),
             "--deployments", deployments, "--scorers", "exact,contains", "--name", name, "--concurrency", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if wait:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
        return process

    def runs(self) -> dict[str, Any]:
        listed = httpx.get(f"{self.gateway.base_url}/admin/evals", headers={"authorization": f"Bearer {MASTER}"},
                           timeout=10)
        return {run["name"]: run for run in listed.json()["data"]}


@pytest.fixture(scope="module")
def evals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evals]:
    folder = tmp_path_factory.mktemp("evals-page")
    models: dict[str, Any] = {name: {"answers": answers} for name, answers in SCRIPTS.items()}
    models["slow"] = {"ttft_ms": 400, "reply": "4"}
    with SimulatorThread(SimConfig.from_dict({"api_key": "sk-sim", "models": models})) as sim:
        config = {"master_key": MASTER, "database_url": f"sqlite:///{folder / 'gw.db'}",
                  "journal_dir": str(folder / "journal"),
                  "providers": {"sim": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim"}},
                  "deployments": [
                      {"name": "strong", "provider": "sim", "model": "strong", "input_price": 5, "output_price": 15},
                      {"name": "weak", "provider": "sim", "model": "weak", "input_price": 0.5, "output_price": 1.5},
                      {"name": "slow", "provider": "sim", "model": "slow", "input_price": 1, "output_price": 1}]}
        path = folder / "modelgate.yaml"
        path.write_text(yaml.safe_dump(config))
        with gateway_in_thread(config) as gateway:
            yield Evals(gateway, folder, path)


@pytest.fixture
def admin(browser: Any, evals: Evals) -> Iterator[Page]:  # noqa: F811  (browser: the imported fixture)
    page = Page(browser, evals.gateway, MASTER)
    yield page
    page.close()


def test_without_a_run_the_page_says_how_to_start_one(admin: Page) -> None:
    # First in this file: no run is stored yet.
    page = admin.open("evals")
    empty = page.locator("main .empty")
    empty.wait_for()
    assert "modelgate eval run" in empty.inner_text()
    assert page.locator("#nav a[aria-current=page]").inner_text() == "Evaluations"
    assert admin.errors == []


def test_a_finished_run_its_summary_results_and_leaderboard(admin: Page, evals: Evals) -> None:
    evals.run("r1", "strong,weak", ITEMS)
    page = admin.open("evals")
    row = page.locator("tr[data-run='r1']")
    row.wait_for()
    assert row.locator("td.status").inner_text() == "done"
    bar = row.locator("progress")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("4", "4")
    assert "4 / 4" in row.inner_text() and "r1.jsonl" in row.inner_text() and "strong, weak" in row.inner_text()
    board = page.locator("section[aria-label='Leaderboard of r1.jsonl']")
    ranks = board.locator("tbody tr").all_inner_texts()
    assert ranks[0].split("\t")[:4] == ["1", "strong", "1.000", "100.0%"]
    assert ranks[1].split("\t")[:4] == ["2", "weak", "0.250", "0.0%"]
    admin.shot("evals")

    row.click()
    page.wait_for_selector("table.summary")
    assert page.url.endswith("#/evals/r1") and page.locator("h1").inner_text() == "r1"
    summary = page.locator("table.summary")
    assert summary.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.deployment)") == ["strong",
                                                                                                        "weak"]
    strong, weak = summary.locator("tr[data-deployment='strong']"), summary.locator("tr[data-deployment='weak']")
    assert strong.locator("td.quality").inner_text() == "1.000" and weak.locator("td.quality").inner_text() == "0.250"
    assert strong.locator("td[data-scorer='exact']").inner_text() == "1.000 [1.000, 1.000]"
    assert weak.locator("td[data-scorer='contains']").inner_text() == "0.500 [0.000, 1.000]"
    assert strong.locator("td.pass-rate").inner_text() == "100.0%"
    assert weak.locator("td.pass-rate").inner_text() == "0.0%"
    assert strong.locator("td.cost").inner_text().startswith("$")
    assert page.locator("section[aria-label='Tag geo'] tr[data-deployment='weak'] td.quality").inner_text() == "0.000"
    assert page.locator("section[aria-label='Tag math'] tr[data-deployment='weak'] td.quality").inner_text() == "0.500"
    results = page.locator("table.results tbody tr")
    assert results.count() == 4
    assert "Paris" in results.nth(0).inner_text() and "exact 1.00" in results.nth(0).inner_text()
    # The weak model's markup is text on the page, not an element.
    assert XSS in results.nth(1).locator(".output").inner_text()
    assert page.locator("main img").count() == 0 and page.evaluate("window.__pwned === undefined")
    admin.shot("eval-run")
    assert admin.errors == []


def test_a_run_in_progress_is_seen_running_then_done_without_a_reload(admin: Page, evals: Evals) -> None:
    items = [{"id": str(i), "input": f"What is {i}+{4 - i}?", "expected": "4"} for i in range(12)]
    process = evals.run("live", "slow", items, wait=False)
    try:
        wait_until(lambda: "live" in evals.runs(), 60, "the run stored")
        page = admin.open("evals")
        row = page.locator("tr[data-run='live']")
        row.wait_for()
        page.evaluate("window.__same_page = true")
        assert row.locator("td.status").inner_text() == "running"
        first = int(row.locator("progress").get_attribute("value") or "0")
        assert first < 12
        admin.shot("evals-running")
        row.locator("td.status", has_text="done").wait_for(timeout=60_000)
        assert row.locator("progress").get_attribute("value") == "12" and "12 / 12" in row.inner_text()
        assert page.evaluate("window.__same_page") is True  # updated in place, not reloaded
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert admin.errors == []
