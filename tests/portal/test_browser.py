"""The portal in a real browser: Debian's chromium, headless, driven by Playwright, against a running
gateway over the simulator. Sign in; every page renders with no console error; a key is created
(shown once) and revoked; a model is deployed from the catalog; a playground stream shows tokens as
they arrive; a comparison of three deployments completes; a project key sees its own view only
(and the API refuses it the rest); a stored-XSS attempt through a model reply and through a
project name renders as text. Each page's screenshot goes to docs/ui/ where MODELGATE_UI_SHOTS
names that folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelgate.simulator import SimConfig, SimulatorThread
from tests.services import in_ci
from tests.support import RunningGateway, gateway_in_thread, wait_until

CHROMIUM = os.environ.get("MODELGATE_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
MASTER = "mk-portal-test"
ADMIN = {"authorization": f"Bearer {MASTER}"}
XSS = '<img src=x onerror="window.__pwned=1">'
PAGES = ["overview", "catalog", "deployments", "keys", "usage", "requests", "playground"]

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(f"{message} (CI=true: these tests must run, not skip)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        _unavailable(f"no chromium at {CHROMIUM}: apt-get install chromium (or set MODELGATE_TEST_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    # gpt-4o streams a chunk every 30 ms, so that the page can be seen to write them as they come.
    sim = SimConfig.from_dict({"api_key": "sk-sim", "models": {"evil": {"reply": XSS}, "gpt-4o": {"chunk_ms": 30}}})
    with SimulatorThread(sim) as simulator:
        v1 = f"{simulator.base_url}/v1"
        config = {
            "master_key": MASTER,
            "providers": {"openai": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "openai"},
                          "xai": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "xai"},
                          "anthropic": {"type": "anthropic", "base_url": simulator.base_url, "api_key": "sk-sim"}},
            "deployments": [{"name": "gpt-4o", "provider": "openai", "model": "gpt-4o"},
                            {"name": "grok-3", "provider": "xai", "model": "grok-3"},
                            {"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5"},
                            {"name": "evil", "provider": "openai", "model": "evil"}],
        }
        with gateway_in_thread(config) as running:
            yield running


class Page:
    """A browser page signed in to the gateway, keeping the console's errors."""

    def __init__(self, browser: Any, gateway: RunningGateway, key: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 860})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.base = gateway.base_url
        self.page.goto(f"{self.base}/")  # a browser asking for / is sent to the portal
        assert self.page.url == f"{self.base}/ui/"
        self.page.fill("input[name=key]", key)
        self.page.click("button[type=submit]")
        self.page.wait_for_selector("#nav a")

    def open(self, name: str) -> Any:
        self.page.goto(f"{self.base}/ui/#/{name}")
        self.page.wait_for_selector("main h1")
        return self.page

    def shot(self, name: str) -> None:
        folder = os.environ.get("MODELGATE_UI_SHOTS")
        if folder:
            self.page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def admin(browser: Any, gateway: RunningGateway) -> Iterator[Page]:
    page = Page(browser, gateway, MASTER)
    yield page
    page.close()


def test_the_page_is_the_gateways_own_and_locked_down(gateway: RunningGateway) -> None:
    answer = httpx.get(f"{gateway.base_url}/ui/", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    assert answer.headers["x-frame-options"] == "DENY"
    total = len(answer.content)
    for path in ["style.css", "app.js", "chart.js", "favicon.svg", *(f"pages/{p}.js" for p in [*PAGES, "index"])]:
        asset = httpx.get(f"{gateway.base_url}/ui/static/{path}", timeout=10)
        assert asset.status_code == 200, path
        total += len(asset.content)
    assert total < 300_000  # the whole portal, uncompressed
    etag = httpx.get(f"{gateway.base_url}/ui/static/app.js", timeout=10).headers["etag"]
    again = httpx.get(f"{gateway.base_url}/ui/static/app.js", headers={"if-none-match": etag}, timeout=10)
    assert again.status_code == 304 and again.content == b""  # the browser keeps what it has
    # An API client's GET / is not sent anywhere.
    assert httpx.get(f"{gateway.base_url}/", timeout=10).status_code == 404


def test_sign_in_sets_a_locked_cookie_and_changes_need_the_csrf_token(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        refused = client.post("/ui/api/session", json={"key": "wrong"})
        assert refused.status_code == 401
        signed = client.post("/ui/api/session", json={"key": MASTER})
        assert signed.status_code == 200
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
        assert MASTER not in cookie  # sealed
        csrf = signed.json()["csrf"]
        assert client.get("/ui/api/gw/admin/projects").status_code == 200
        assert client.post("/ui/api/gw/admin/keys", json={"project": "p"}).status_code == 403
        assert client.post("/ui/api/gw/admin/keys", json={"project": "p"},
                           headers={"x-csrf-token": csrf, "origin": "https://evil.example"}).status_code == 403
        created = client.post("/ui/api/gw/admin/keys", json={"project": "csrf-ok"}, headers={"x-csrf-token": csrf})
        assert created.status_code == 201
        assert client.delete("/ui/api/session", headers={"x-csrf-token": csrf}).status_code == 200
    with httpx.Client(base_url=gateway.base_url, timeout=10) as stranger:
        assert stranger.get("/ui/api/gw/admin/projects").status_code == 401


def test_create_a_key_see_it_once_and_revoke_it(admin: Page) -> None:
    page = admin.open("keys")
    page.fill("input[name=project]", "team-ui")
    page.fill("input[name=name]", "from-the-browser")
    page.click("form button[type=submit]")
    key = page.locator("code.new-key").inner_text()
    assert key.startswith("mg-")
    works = httpx.get(f"{admin.base}/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=10)
    assert works.status_code == 200
    row = page.locator("tr", has_text="from-the-browser")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    page.locator("tr", has_text="from-the-browser").get_by_text("revoked").wait_for()
    refused = httpx.get(f"{admin.base}/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=10)
    assert refused.status_code == 401
    admin.page.reload()
    admin.page.wait_for_selector("main h1")
    assert key not in admin.page.content()  # shown once, never again
    assert admin.errors == []


def test_deploy_from_the_catalog(admin: Page) -> None:
    page = admin.open("catalog")
    page.fill("input[type=search]", "gpt-4.1-mini")
    page.locator("tr", has_text="gpt-4.1-mini").get_by_role("button", name="Deploy").click()
    page.fill("input[name=name]", "mini-from-ui")
    page.locator("form[aria-label='Deploy gpt-4.1-mini'] button[type=submit]").click()
    page.wait_for_selector("section[data-deployment='mini-from-ui']")  # the page it went on to
    assert page.url.endswith("#/deployments")
    answer = httpx.post(f"{admin.base}/v1/chat/completions", headers=ADMIN, timeout=30,
                        json={"model": "mini-from-ui", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200 and answer.headers["x-modelgate-model"] == "gpt-4.1-mini"
    assert admin.errors == []


def test_a_playground_stream_shows_tokens_as_they_arrive(admin: Page) -> None:
    page = admin.open("playground/gpt-4o")
    page.fill("textarea[name=prompt]", "Please write a long answer about streaming")
    page.fill("input[name=max_tokens]", "400")
    page.evaluate("""() => {
        window.__lengths = [];
        new MutationObserver(() => {
            const out = document.querySelector('section[data-deployment="gpt-4o"] .output');
            if (out) window.__lengths.push(out.textContent.length);
        }).observe(document.querySelector('main'), {subtree: true, childList: true, characterData: true});
    }""")
    page.click("form button[type=submit]")
    panel = page.locator("section[data-deployment='gpt-4o']")
    panel.and_(page.locator("[data-done='true']")).wait_for()
    lengths = [n for n in page.evaluate("window.__lengths") if n]
    assert len(set(lengths)) > 3  # the text grew chunk by chunk, not at once
    stats = panel.locator(".stats").inner_text()
    assert "first token" in stats and "out tokens" in stats and "cost $" in stats
    assert "curl" in page.locator("pre").inner_text() and "gpt-4o" in page.locator("pre").inner_text()
    assert admin.errors == []


def test_a_comparison_of_three_deployments_completes(admin: Page) -> None:
    page = admin.open("playground")
    for name in ("gpt-4o", "grok-3", "claude"):
        box = page.locator(f"input[name=deployment][value='{name}']")
        if not box.is_checked():
            box.check()
    page.fill("textarea[name=prompt]", "Compare yourselves")
    page.click("form button[type=submit]")
    for name in ("gpt-4o", "grok-3", "claude"):
        done = page.locator(f"section[data-deployment='{name}'][data-done='true']")
        done.wait_for()
        assert done.locator(".output").inner_text().strip()
        assert "first token" in done.locator(".stats").inner_text()
    assert admin.errors == []


def test_a_project_key_sees_its_own_view_only(browser: Any, gateway: RunningGateway) -> None:
    created = httpx.post(f"{gateway.base_url}/admin/keys", headers=ADMIN, timeout=10,
                         json={"project": "team-narrow", "deployments": ["gpt-4o"]}).json()
    project = Page(browser, gateway, created["key"])
    try:
        names = project.page.locator("#nav a").all_inner_texts()
        assert "Projects & keys" not in names and "Requests" not in names and "Playground" in names
        assert "Usage" in names
        page = project.open("keys")
        assert "no page" in page.locator("main").inner_text()
        page = project.open("playground")
        assert page.locator("input[name=deployment]").evaluate_all("els => els.map(e => e.value)") == ["gpt-4o"]
        page = project.open("catalog")
        assert "claude" not in page.locator("main").inner_text()
        # The API refuses it too, through the session as with the key itself.
        denied = page.evaluate("fetch('/ui/api/gw/admin/projects').then(r => r.status)")
        assert denied == 403
        assert page.evaluate("fetch('/ui/api/overview').then(r => r.status)") == 403
        # Its own project's usage, and only that.
        httpx.post(f"{gateway.v1}/chat/completions", headers={"authorization": f"Bearer {created['key']}"},
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "mine"}]}, timeout=30)
        report = f"{gateway.base_url}/admin/usage?project=team-narrow"
        wait_until(lambda: httpx.get(report, headers=ADMIN, timeout=10).json()["totals"]["requests"] == 1,
                   what="the project's usage record")
        page = project.open("usage")
        assert "Usage of team-narrow" in page.locator("h1").inner_text()
        page.locator("td", has_text=created["id"]).wait_for()
        own = page.evaluate("fetch('/ui/api/usage?group_by=deployment').then(r => r.json())")
        assert own["project"] == "team-narrow" and [r["deployment"] for r in own["data"]] == ["gpt-4o"]
        assert project.errors == [] or all("403" in e for e in project.errors)
    finally:
        project.close()


def test_model_output_and_names_render_as_text(admin: Page, gateway: RunningGateway) -> None:
    # A project name cannot hold markup at all: the API refuses it before anything could show it.
    refused = httpx.post(f"{gateway.base_url}/admin/projects", headers=ADMIN, timeout=10, json={"name": XSS})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "name"
    httpx.post(f"{gateway.base_url}/admin/projects", headers=ADMIN, timeout=10, json={"name": "xss-probe"})
    key = httpx.post(f"{gateway.base_url}/admin/keys", headers=ADMIN, timeout=10,
                     json={"project": "xss-probe", "name": XSS}).json()
    assert key["name"] == XSS
    page = admin.open("playground/evil")
    page.fill("textarea[name=prompt]", "say it")
    page.click("form button[type=submit]")
    done = page.locator("section[data-deployment='evil'][data-done='true']")
    done.wait_for()
    assert XSS in done.locator(".output").inner_text()
    assert done.locator(".output img").count() == 0
    page = admin.open("keys")
    page.locator("td", has_text="onerror").first.wait_for()
    assert page.locator("main img").count() == 0
    wait_until(lambda: httpx.get(f"{gateway.base_url}/admin/requests", headers=ADMIN, timeout=10,
                                 params={"deployment": "evil"}).json()["data"], what="the reply's log entry")
    page = admin.open("requests")
    page.wait_for_selector("tr[data-request]")
    assert page.evaluate("window.__pwned === undefined")
    assert admin.errors == []


def test_every_page_renders_without_console_errors(admin: Page, gateway: RunningGateway) -> None:
    # Last in this file: the pages show what the tests above did (and their screenshots too).
    httpx.post(f"{gateway.v1}/chat/completions", headers=ADMIN, timeout=30,
               json={"model": "gpt-4o", "messages": [{"role": "user", "content": "warm up the overview"}]})
    for name in PAGES:
        page = admin.open(name)
        page.wait_for_load_state("networkidle")
        assert page.locator("main p.error:not(:empty)").count() == 0, name
        admin.shot(name)
    assert admin.errors == []
