"""The admin API under /admin: projects, keys, deployments, blocklists, usage reports, provider
statements, the request log and evaluation runs.

``ENDPOINTS`` is the API: the admin app (surfaces/admin/app.py) serves each route with the master
key required, and the OpenAPI document at ``GET /admin/openapi.json`` (surfaces/admin/openapi.py)
describes each one from its handler's ``@documented``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple

from starlette.requests import Request
from starlette.responses import Response

from modelgate.auth.keyadmin import KeyAdmin, parse_key_spec, parse_limit_changes, parse_project_spec, parse_safety
from modelgate.schema.errors import InvalidRequest, NotFound
from modelgate.storage import GROUP_BY, InvalidCursor
from modelgate.surfaces.admin import evals, requests, wire
from modelgate.surfaces.admin.core import AdminCore
from modelgate.surfaces.admin.openapi import (
    CONFLICT,
    DEPLOYMENT_CONFLICT,
    EVAL_PAGE,
    FILTERS,
    FORMAT,
    NOT_FOUND,
    SHA256,
    answer,
    document,
    documented,
    parameter,
    text_schema,
)
from modelgate.surfaces.admin.web import csv_response, json_body, json_response, output_format, query


class AdminAPI:
    """The handlers of the admin API, each answering one route of ``ENDPOINTS``."""

    def __init__(self, core: AdminCore) -> None:
        self.storage = core.storage
        # The deployments as they are now: those made through the API come and go.
        self.admin = KeyAdmin(core.storage, core.deployments, core.key_sync.changed)
        self.deployments = core.deployment_admin
        self.blocklists = core.blocklist_admin
        self.policies = core.content_policies
        self.cache = core.cache_admin

    @documented("This document", {"200": {"description": "OpenAPI 3.1"}})
    async def openapi(self, request: Request) -> Response:
        return json_response(200, document(ENDPOINTS))

    # -- projects ----------------------------------------------------------------------------

    @documented("Create a project", {"201": answer("The project", "Project"), **CONFLICT}, body="ProjectCreate")
    async def create_project(self, request: Request) -> Response:
        body = await json_body(request)
        name, limits = parse_project_spec(body, self.admin.deployments)
        record = await self.admin.create_project(name, limits, parse_safety(body, self.policies))
        return json_response(201, wire.project_json(record))

    @documented("List the projects", {"200": answer("The projects", "ProjectList")})
    async def list_projects(self, request: Request) -> Response:
        found = await self.storage.keys.list_projects()
        return json_response(200, {"object": "list", "data": [wire.project_json(p) for p in found]})

    @documented("One project", {"200": answer("The project", "Project"), **NOT_FOUND})
    async def get_project(self, request: Request) -> Response:
        name = wire.text_param(request.path_params["name"], "name")
        record = await self.storage.keys.get_project(name)
        if record is None:
            raise NotFound(f"There is no project {name!r}.", code="project_not_found")
        return json_response(200, wire.project_json(record))

    @documented("Change a project's limits and content policy (null clears one)",
                {"200": answer("The project", "Project"), **NOT_FOUND}, body="ProjectUpdate")
    async def update_project(self, request: Request) -> Response:
        changes = parse_limit_changes(await json_body(request), self.admin.deployments, self.policies)
        record = await self.admin.update_project(wire.text_param(request.path_params["name"], "name"), changes)
        return json_response(200, wire.project_json(record))

    # -- keys --------------------------------------------------------------------------------

    @documented("Create a key; the answer holds the key, shown this once",
                {"201": answer("The key", "KeyCreated")}, body="KeyCreate")
    async def create_key(self, request: Request) -> Response:
        issued = await self.admin.create_key(parse_key_spec(await json_body(request), self.admin.deployments))
        return json_response(201, wire.issued_key_json(issued))

    @documented("List the keys (not their secrets)", {"200": answer("The keys", "KeyList")},
                parameters=[parameter("project", "Only this project's keys", text_schema("project")),
                            parameter("include_revoked", "Revoked keys too", {"enum": ["true", "false"]})])
    async def list_keys(self, request: Request) -> Response:
        params = query(request, {"project", "include_revoked"})
        include = params.get("include_revoked", "false")
        if include not in ("true", "false"):
            raise InvalidRequest("'include_revoked' must be true or false", param="include_revoked")
        project = wire.text_param(params["project"], "project") if "project" in params else None
        found = await self.storage.keys.list_keys(project, include_revoked=include == "true")
        return json_response(200, {"object": "list", "data": [wire.key_json(k) for k in found]})

    @documented("One key", {"200": answer("The key", "Key"), **NOT_FOUND})
    async def get_key(self, request: Request) -> Response:
        key_id = wire.text_param(request.path_params["id"], "id")
        record = await self.storage.keys.get_key(key_id)
        if record is None:
            raise NotFound(f"There is no key {key_id!r}.", code="key_not_found")
        return json_response(200, wire.key_json(record))

    @documented("Revoke a key: it stops working on every gateway process at once",
                {"200": answer("The revoked key", "Key"), **NOT_FOUND})
    async def revoke_key(self, request: Request) -> Response:
        record = await self.admin.revoke_key(wire.text_param(request.path_params["id"], "id"))
        return json_response(200, wire.key_json(record))

    # -- deployments -------------------------------------------------------------------------

    @documented("Create a deployment, in force on every gateway process when this returns (a local model's "
                "once it has loaded on the process that took the call; 400 if it cannot load)",
                {"201": answer("The deployment", "Deployment"), **DEPLOYMENT_CONFLICT}, body="DeploymentCreate")
    async def create_deployment(self, request: Request) -> Response:
        entry = await self.deployments.create(await json_body(request))
        return json_response(201, wire.deployment_json(entry.settings, entry.record))

    @documented("List the deployments in force, from the config file and from this API",
                {"200": answer("The deployments", "DeploymentList")})
    async def list_deployments(self, request: Request) -> Response:
        return json_response(200, {"object": "list", "data": [
            wire.deployment_json(entry.settings, entry.record) for entry in self.deployments.listed()]})

    @documented("One deployment", {"200": answer("The deployment", "Deployment"), **NOT_FOUND})
    async def get_deployment(self, request: Request) -> Response:
        entry = await self.deployments.get(wire.text_param(request.path_params["name"], "name"))
        return json_response(200, wire.deployment_json(entry.settings, entry.record))

    @documented("Change a deployment made through this API (its keys merged over the stored ones); a local "
                "model's new engine settings replace its replicas, those running finish their requests first",
                {"200": answer("The deployment", "Deployment"), **NOT_FOUND, **DEPLOYMENT_CONFLICT},
                body="DeploymentUpdate")
    async def update_deployment(self, request: Request) -> Response:
        name = wire.text_param(request.path_params["name"], "name")
        entry = await self.deployments.update(name, await json_body(request))
        return json_response(200, wire.deployment_json(entry.settings, entry.record))

    @documented("Delete a deployment made through this API: it stops answering on every gateway process (a local "
                "model's replicas finish the requests they run, then stop)",
                {"200": answer("The deleted deployment", "Deployment"), **NOT_FOUND, **DEPLOYMENT_CONFLICT})
    async def delete_deployment(self, request: Request) -> Response:
        entry = await self.deployments.delete(wire.text_param(request.path_params["name"], "name"))
        return json_response(200, wire.deployment_json(entry.settings, entry.record))

    # -- blocklists --------------------------------------------------------------------------

    @documented("List the blocklists of the config, with the terms and patterns in force",
                {"200": answer("The blocklists", "BlocklistList")})
    async def list_blocklists(self, request: Request) -> Response:
        return json_response(200, {"object": "list", "data": [
            wire.blocklist_json(entry) for entry in self.blocklists.listed()]})

    @documented("Set a blocklist's terms and patterns in place of the config's, in force on every gateway "
                "process when this returns",
                {"200": answer("The blocklist", "Blocklist"), **NOT_FOUND}, body="BlocklistSet")
    async def put_blocklist(self, request: Request) -> Response:
        name = wire.text_param(request.path_params["name"], "name")
        return json_response(200, wire.blocklist_json(await self.blocklists.put(name, await json_body(request))))

    @documented("Remove the terms and patterns set through this API: the config's are in force again",
                {"200": answer("The blocklist", "Blocklist"), **NOT_FOUND})
    async def delete_blocklist(self, request: Request) -> Response:
        name = wire.text_param(request.path_params["name"], "name")
        return json_response(200, wire.blocklist_json(await self.blocklists.delete(name)))

    # -- reports -----------------------------------------------------------------------------

    @documented("Usage totals with cost, revenue and margin, optionally grouped",
                {"200": answer("The report", "UsageReport", csv=True)},
                parameters=[*FILTERS, parameter("group_by", f"Comma-separated: {', '.join(GROUP_BY)}"), FORMAT])
    async def usage(self, request: Request) -> Response:
        params = query(request, {"project", "key", "deployment", "provider", "model", "since", "until", "period",
                                 "group_by", "format"})
        filters = wire.report_filters(params)
        group_by = wire.parse_group_by(params.get("group_by"))
        rows = await self.storage.query_usage(filters, group_by)
        if output_format(params) == "csv":
            return csv_response(wire.usage_csv(rows, group_by), "usage.csv")
        compute = None
        if wire.compute_applies(filters):
            found = await self.storage.replica_hours.compute(filters.since, filters.until, filters.provider)
            compute = wire.report_compute(found, filters)
        return json_response(200, wire.usage_report_json(rows, filters, group_by, compute))

    @documented("What is owed to each provider for a period, by model: token cost, and for local providers "
                "the cost of their replicas' hours, beside what projects were charged",
                {"200": answer("One statement per provider", "StatementList", csv=True)},
                parameters=[parameter("provider", "Only this provider", text_schema("provider")), *FILTERS[5:], FORMAT])
    async def statements(self, request: Request) -> Response:
        params = query(request, {"provider", "since", "until", "period", "format"})
        filters = wire.report_filters(params)
        rows = await self.storage.query_usage(filters, wire.STATEMENT_GROUPS)
        compute = await self.storage.replica_hours.compute(filters.since, filters.until, filters.provider)
        found = wire.statements(rows, filters.since, filters.until, compute)
        if output_format(params) == "csv":
            return csv_response(wire.statements_csv(found), "statements.csv")
        return json_response(200, {"object": "list", "data": [wire.statement_json(s) for s in found]})

    # -- the response cache ------------------------------------------------------------------

    @documented("Clear the response cache: a deployment's answers, a project's, both, or (with neither) all",
                {"200": answer("How many answers were dropped", "CacheCleared")},
                parameters=[parameter("deployment", "Only this deployment's answers", text_schema("deployment")),
                            parameter("project", "Only this project's answers (a deployment with cache scope "
                                                 "global keeps its answers under no project)",
                                      text_schema("project"))])
    async def clear_cache(self, request: Request) -> Response:
        params = query(request, {"deployment", "project"})
        deployment = wire.text_param(params["deployment"], "deployment") if "deployment" in params else None
        project = wire.text_param(params["project"], "project") if "project" in params else None
        deleted = await self.cache.clear(deployment, project)
        return json_response(200, {"object": "cache.cleared", "deployment": deployment, "project": project,
                                   "deleted": deleted})

    # -- the request log ---------------------------------------------------------------------

    @documented("The request log, newest first: each request that reached a deployment, kept for "
                "request_log.retention_days",
                {"200": answer("A page of requests", "RequestPage")},
                parameters=[*FILTERS[:4], *FILTERS[5:7],
                            parameter("status", "A status code (429) or class (5xx)"),
                            parameter("q", "Text in the error message (failed requests)", {"type": "string",
                                                                                          "maxLength": 200}),
                            parameter("limit", "Entries per page, 1 to 1000 (default 50)",
                                      {"type": "integer", "minimum": 1, "maximum": 1000}),
                            parameter("cursor", "The next_cursor of the previous page")])
    async def list_requests(self, request: Request) -> Response:
        params = query(request, set(requests.PARAMS))
        filters = requests.request_filters(params)
        try:
            found, cursor = await self.storage.request_log.search(
                filters, requests.parse_limit(params.get("limit")), params.get("cursor"))
        except InvalidCursor as error:
            raise InvalidRequest(str(error), param="cursor") from None
        return json_response(200, requests.page_json(found, cursor))

    @documented("One request of the log: its attempts and, where its deployment logs them, its payloads",
                {"200": answer("The request", "RequestDetail"), **NOT_FOUND})
    async def get_request(self, request: Request) -> Response:
        request_id = wire.text_param(request.path_params["request_id"], "request_id")
        entry = await self.storage.request_log.get(request_id)
        if entry is None:
            raise NotFound(f"No request '{request_id}' in the request log: the id is wrong, the request did not "
                           "reach a deployment, or it is older than request_log.retention_days",
                           param="request_id")
        return json_response(200, requests.entry_json(entry, detail=True))

    # -- evaluations -------------------------------------------------------------------------

    @documented("The evaluation runs (`modelgate eval run`), newest first, with how far each has got",
                {"200": answer("The runs", "EvalRunList")},
                parameters=[parameter("dataset", "Only the runs of this dataset (its sha256)", SHA256)])
    async def list_evals(self, request: Request) -> Response:
        params = query(request, {"dataset"})
        dataset = evals.sha256_param(params["dataset"], "dataset") if "dataset" in params else None
        return json_response(200, await evals.run_list(self.storage.evals, dataset))

    @documented("One evaluation run with its report: per deployment and per tag, each scorer's mean with its "
                "95 % interval, the pass rate, latency and cost",
                {"200": answer("The run", "EvalRunReport"), **NOT_FOUND})
    async def get_eval(self, request: Request) -> Response:
        return json_response(200, await evals.run_report(self.storage.evals, request.path_params["run"]))

    @documented("A run's results, one per item, repeat and deployment, in item order",
                {"200": answer("A page of results", "EvalResultPage"), **NOT_FOUND}, parameters=EVAL_PAGE)
    async def list_eval_results(self, request: Request) -> Response:
        params = query(request, {"limit", "offset"})
        limit = evals.whole_param(params.get("limit"), "limit", evals.DEFAULT_LIMIT, 1, evals.MAX_LIMIT)
        offset = evals.whole_param(params.get("offset"), "offset", 0, 0, evals.MAX_OFFSET)
        page = await evals.result_page(self.storage.evals, request.path_params["run"], limit, offset)
        return json_response(200, page)

    @documented("The datasets evaluated, each with its number of runs, most recently run first",
                {"200": answer("The datasets", "EvalDatasetList")})
    async def list_leaderboards(self, request: Request) -> Response:
        return json_response(200, await evals.datasets(self.storage.evals))

    @documented("A dataset's leaderboard: each deployment as the most recent finished run of the dataset "
                "scored it, best quality first",
                {"200": answer("The leaderboard", "Leaderboard"), **NOT_FOUND})
    async def get_leaderboard(self, request: Request) -> Response:
        dataset = evals.sha256_param(request.path_params["dataset_sha256"], "dataset_sha256")
        return json_response(200, await evals.leaderboard(self.storage.evals, dataset))


Handler = Callable[[AdminAPI, Request], Awaitable[Response]]


class Endpoint(NamedTuple):
    method: str
    path: str
    handler: Handler


# The API, in the order the document lists it.
ENDPOINTS = [
    Endpoint("GET", "/admin/openapi.json", AdminAPI.openapi),
    Endpoint("POST", "/admin/projects", AdminAPI.create_project),
    Endpoint("GET", "/admin/projects", AdminAPI.list_projects),
    Endpoint("GET", "/admin/projects/{name}", AdminAPI.get_project),
    Endpoint("PATCH", "/admin/projects/{name}", AdminAPI.update_project),
    Endpoint("POST", "/admin/keys", AdminAPI.create_key),
    Endpoint("GET", "/admin/keys", AdminAPI.list_keys),
    Endpoint("GET", "/admin/keys/{id}", AdminAPI.get_key),
    Endpoint("DELETE", "/admin/keys/{id}", AdminAPI.revoke_key),
    Endpoint("POST", "/admin/deployments", AdminAPI.create_deployment),
    Endpoint("GET", "/admin/deployments", AdminAPI.list_deployments),
    Endpoint("GET", "/admin/deployments/{name}", AdminAPI.get_deployment),
    Endpoint("PATCH", "/admin/deployments/{name}", AdminAPI.update_deployment),
    Endpoint("DELETE", "/admin/deployments/{name}", AdminAPI.delete_deployment),
    Endpoint("GET", "/admin/blocklists", AdminAPI.list_blocklists),
    Endpoint("PUT", "/admin/blocklists/{name}", AdminAPI.put_blocklist),
    Endpoint("DELETE", "/admin/blocklists/{name}", AdminAPI.delete_blocklist),
    Endpoint("GET", "/admin/usage", AdminAPI.usage),
    Endpoint("GET", "/admin/statements", AdminAPI.statements),
    Endpoint("DELETE", "/admin/cache", AdminAPI.clear_cache),
    Endpoint("GET", "/admin/requests", AdminAPI.list_requests),
    Endpoint("GET", "/admin/requests/{request_id}", AdminAPI.get_request),
    Endpoint("GET", "/admin/evals", AdminAPI.list_evals),
    # Before /admin/evals/{run}: these paths are the leaderboards', whatever a run is named.
    Endpoint("GET", "/admin/evals/leaderboards", AdminAPI.list_leaderboards),
    Endpoint("GET", "/admin/evals/leaderboards/{dataset_sha256}", AdminAPI.get_leaderboard),
    Endpoint("GET", "/admin/evals/{run}", AdminAPI.get_eval),
    Endpoint("GET", "/admin/evals/{run}/results", AdminAPI.list_eval_results),
]
