"""Deploying a local model from the portal's catalog starts it: the catalog lists the models in a
local provider's store, and the deployment made from one answers with the real model (SmolLM2 under
llama.cpp) once its replica has loaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelgate.catalog.model_store import ModelStore
from tests.portal.test_browser import Page, browser  # noqa: F401  (the module's chromium, reused)
from tests.support import RunningGateway, gateway_in_thread, wait_until

MASTER = "mk-portal-local"


@pytest.fixture
def gateway(smollm2_gguf: Path, tmp_path: Path) -> Iterator[RunningGateway]:
    store = tmp_path / "models"
    ModelStore(store).add(smollm2_gguf, "smollm2")
    config = {"master_key": MASTER, "providers": {"local": {"type": "local", "models_dir": str(store)}},
              "deployments": []}
    with gateway_in_thread(config) as running:
        yield running


def test_deploy_a_local_model_from_the_catalog(browser: Any, gateway: RunningGateway) -> None:  # noqa: F811
    admin = Page(browser, gateway, MASTER)
    try:
        page = admin.open("catalog")
        row = page.locator("tr", has_text="local (local)").filter(has_text="smollm2")
        row.get_by_role("button", name="Deploy").click()
        page.fill("input[name=name]", "smol")
        assert page.locator("select[name=provider]").input_value() == "local"
        page.locator("form[aria-label='Deploy smollm2'] button[type=submit]").click()
        page.wait_for_selector("section[data-deployment='smol']", timeout=120_000)
        assert admin.errors == []
    finally:
        admin.close()

    def answered() -> bool:
        reply = httpx.post(f"{gateway.base_url}/v1/chat/completions", timeout=120,
                           headers={"authorization": f"Bearer {MASTER}"},
                           json={"model": "smol", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]})
        return reply.status_code == 200 and reply.headers["x-modelgate-provider"] == "local"

    wait_until(answered, 120, "the deployed local model's answer")
