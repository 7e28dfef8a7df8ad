"""Built-in tools (web_search, file_search, ...) go only to targets that speak the Responses API; a
deployment without one refuses them with 400 naming the tool, before anything is sent upstream."""

from __future__ import annotations

from typing import Any

import pytest

from modelgate.config import parse_settings
from modelgate.pipeline.contract import Call, Principal
from modelgate.providers.registry import create_provider
from modelgate.providers.transport import HTTPClient
from modelgate.routing.health import Health
from modelgate.routing.router import Router
from modelgate.schema.errors import InvalidRequest
from modelgate.schema.events import fold_events
from modelgate.schema.request import ChatRequest, Message, ResponsesPassthrough, TextPart
from modelgate.simulator import SimulatorThread
from tests.routing.conftest import Names, SimControl, providers

WEB_SEARCH = {"type": "web_search", "search_context_size": "low"}


def router_for(sim: SimulatorThread, http: HTTPClient, *deployments: dict[str, Any]) -> tuple[Router, Any]:
    settings = parse_settings({"providers": providers(sim.base_url), "deployments": list(deployments)}, {})
    upstreams = {name: create_provider(p, http) for name, p in settings.providers.items()}
    return Router(settings.deployments, upstreams, Health()), settings.deployments


async def ask(router: Router, deployment: Any, tools: list[dict[str, Any]]) -> Call:
    # As the Responses surface sends them: each built-in tool beside its place in the client's tools.
    passthrough = ResponsesPassthrough(tools=tools, tool_indexes=[i + 1 for i in range(len(tools))])
    request = ChatRequest(model=deployment.name, messages=[Message("user", [TextPart("Any news today?")])],
                          passthrough=passthrough)
    call = Call(request_id="req-1", request=request, deployment=deployment, principal=Principal(key_id="master"))
    result = fold_events([event async for event in router(call)])
    assert result.choices[0].text.startswith("Simulated reply from")
    return call


async def test_a_deployment_without_a_responses_target_refuses_the_tool(
        sim: SimulatorThread, http: HTTPClient, names: Names, simctl: SimControl) -> None:
    router, deployments = router_for(
        sim, http,
        {"name": "chat", "provider": "openai", "model": names.a, "fallbacks": ["backup"]},
        {"name": "backup", "provider": "azure", "model": names.b})
    with pytest.raises(InvalidRequest) as caught:
        await ask(router, deployments["chat"], [WEB_SEARCH])
    error = caught.value
    assert (error.status, error.param, error.code) == (400, "tools[1]", "unsupported_tool")
    assert error.message.startswith("web_search (tools[1]) is a built-in tool that runs on OpenAI's servers and "
                                    "needs an upstream that speaks the Responses API; deployment 'chat' and its "
                                    "fallbacks")
    assert f"openai/{names.a} (api: chat), azure/{names.b} (api: chat)" in error.message
    assert (simctl.served(names.a), simctl.served(names.b)) == (0, 0)  # refused before anything was sent
    with pytest.raises(InvalidRequest) as caught:
        await ask(router, deployments["backup"], [WEB_SEARCH, {"type": "file_search", "vector_store_ids": ["v"]}])
    assert caught.value.message.startswith(
        "web_search, file_search (tools[1], ...) are built-in tools that run on OpenAI's servers")


async def test_only_the_targets_that_speak_responses_take_them(
        sim: SimulatorThread, http: HTTPClient, names: Names, simctl: SimControl) -> None:
    router, deployments = router_for(sim, http, {"name": "mixed", "strategy": "priority", "targets": [
        {"provider": "openai", "model": names.a},
        {"provider": "openai", "model": names.b, "api": "responses"},
    ]}, {"name": "primary", "provider": "azure", "model": names.c, "fallbacks": ["native"]},
        {"name": "native", "provider": "azure", "model": names.d, "api": "responses"})
    for _ in range(3):
        call = await ask(router, deployments["mixed"], [WEB_SEARCH])
        assert call.upstream_model == names.b
    assert (simctl.served(names.a), simctl.served(names.b)) == (0, 3)
    # A fallback that speaks Responses takes them when the deployment's own targets do not.
    call = await ask(router, deployments["primary"], [WEB_SEARCH])
    assert (call.provider, call.upstream_model) == ("azure", names.d)
    assert simctl.served(names.c) == 0


async def test_without_built_in_tools_every_target_serves(
        sim: SimulatorThread, http: HTTPClient, names: Names, simctl: SimControl) -> None:
    router, deployments = router_for(sim, http, {"name": "chat", "provider": "openai", "model": names.a})
    await ask(router, deployments["chat"], [])
    assert simctl.served(names.a) == 1
