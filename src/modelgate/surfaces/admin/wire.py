"""The admin API's JSON and CSV: projects, keys, usage reports and provider statements.

The CLI prints the same shapes (``--json``, ``--csv``), so a script can switch between the two.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from modelgate.auth.keyadmin import IssuedKey
from modelgate.config.settings import DeploymentSettings
from modelgate.schema.errors import InvalidRequest
from modelgate.storage import GROUP_BY, ComputeRow, DeploymentRecord, KeyRecord, ProjectRecord, UsageFilters, UsageRow
from modelgate.storage.bounds import text_length, text_problem
from modelgate.storage.tables import api_keys, usage
from modelgate.surfaces.admin.core import BlocklistEntry

TOKEN_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "output_tokens")
USAGE_FIELDS = ("requests", "errors", *TOKEN_FIELDS, "cost", "revenue", "margin", "cache_hits", "saved")
STATEMENT_FIELDS = ("provider", "model", "deployments", "requests", *TOKEN_FIELDS, "cost", "revenue",
                    "cache_hits", "saved", "replica_hours", "per_replica_hour", "compute_cost")
# What a usage row adds up (besides its groups).
SUMMED = ("requests", "errors", *TOKEN_FIELDS, "cost", "revenue", "cache_hits", "saved")
# What statements read of usage: one row per provider, model and deployment.
STATEMENT_GROUPS = ("provider", "model", "deployment")


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _money(value: float) -> float:
    # Sums of float prices carry noise in the last digits; a millionth of a cent is plenty.
    return round(value, 8)


def limits_json(record: KeyRecord | ProjectRecord) -> dict[str, Any]:
    return {"deployments": record.deployments, "rpm": record.rpm, "tpm": record.tpm,
            "budget": record.budget, "budget_period": record.budget_period}


def project_json(record: ProjectRecord) -> dict[str, Any]:
    return {"object": "project", "name": record.name, **limits_json(record), "safety": record.safety,
            "created_at": _time(record.created_at)}


def key_json(record: KeyRecord) -> dict[str, Any]:
    return {"object": "api_key", "id": record.id, "project": record.project, "name": record.name,
            "prefix": record.prefix, **limits_json(record), "expires_at": _time(record.expires_at),
            "created_at": _time(record.created_at), "revoked_at": _time(record.revoked_at),
            "status": key_status(record)}


def key_status(record: KeyRecord, now: datetime | None = None) -> str:
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= (now or datetime.now(UTC)):
        return "expired"
    return "active"


def issued_key_json(issued: IssuedKey) -> dict[str, Any]:
    """The answer to creating a key: the only time its plaintext is shown."""
    return {**key_json(issued.record), "key": issued.key}


def deployment_json(deployment: DeploymentSettings, record: DeploymentRecord | None) -> dict[str, Any]:
    """A deployment in force: where it comes from (the config file or the admin API), how it
    routes, and for one made through the API the body it was given."""
    return {"object": "deployment", "name": deployment.name, "source": "config" if record is None else "api",
            "strategy": deployment.strategy, "fallbacks": list(deployment.fallbacks),
            "timeout": deployment.timeout, "retries": deployment.retries,
            "targets": [{"provider": t.provider, "model": t.model, "weight": t.weight, "api": t.api}
                        for t in deployment.targets],
            "body": record.body if record is not None else None,
            "created_at": _time(record.created_at) if record is not None else None,
            "updated_at": _time(record.updated_at) if record is not None else None}


def usage_row_json(row: UsageRow, group_by: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {name: getattr(row, "key_id" if name == "key" else name) for name in group_by}
    body.update({name: getattr(row, name) for name in ("requests", "errors", *TOKEN_FIELDS)})
    body.update(cost=_money(row.cost), revenue=_money(row.revenue), margin=_money(row.margin),
                cache_hits=row.cache_hits, saved=_money(row.saved))
    return body


def totals(rows: Sequence[UsageRow]) -> UsageRow:
    total = UsageRow()
    for row in rows:
        for name in SUMMED:
            setattr(total, name, getattr(total, name) + getattr(row, name))
    return total


def usage_report_json(rows: Sequence[UsageRow], filters: UsageFilters, group_by: Sequence[str],
                      compute: Sequence[ComputeRow] | None = None) -> dict[str, Any]:
    """The report; ``compute``: the own compute of the period (``report_compute``), None where the
    report is of a project, a key or a deployment, to which a replica's time is not charged."""
    return {"object": "usage_report", "filters": filters_json(filters), "group_by": list(group_by),
            "data": [usage_row_json(row, group_by) for row in rows],
            "totals": usage_row_json(totals(rows), ()),
            "compute": [compute_json(row) for row in compute] if compute is not None else None}


def compute_applies(filters: UsageFilters) -> bool:
    """Whether a usage report with ``filters`` shows own compute: replicas run for the whole
    installation, so their time belongs to no project, key or deployment."""
    return filters.project is None and filters.key_id is None and filters.deployment is None


def report_compute(found: Sequence[ComputeRow], filters: UsageFilters) -> list[ComputeRow]:
    """The local models' replica time that a report with ``filters`` (provider, model) shows."""
    return [row for row in found if filters.model is None or row.model == filters.model]


def compute_json(row: ComputeRow) -> dict[str, Any]:
    return {"provider": row.provider, "model": row.model, "runs": row.runs,
            "replica_hours": round(row.replica_hours, 6), "per_replica_hour": row.per_replica_hour,
            "compute_cost": _money(row.compute_cost) if row.compute_cost is not None else None}


def filters_json(filters: UsageFilters) -> dict[str, Any]:
    return {"project": filters.project, "key": filters.key_id, "deployment": filters.deployment,
            "provider": filters.provider, "model": filters.model,
            "since": _time(filters.since), "until": _time(filters.until)}


def usage_csv(rows: Sequence[UsageRow], group_by: Sequence[str]) -> str:
    return _csv([*group_by, *USAGE_FIELDS], [usage_row_json(row, group_by) for row in rows])


@dataclass(slots=True, kw_only=True)
class StatementLine:
    """One model of a provider: its usage, what it was charged, and for a local model its replicas' time."""

    usage: UsageRow
    deployments: list[str] = field(default_factory=list)
    compute: ComputeRow | None = None


@dataclass(slots=True, kw_only=True)
class Statement:
    """What is owed to one provider for a period, by model: its token cost, and for a local
    provider the cost of its replicas' time (own compute), each beside what projects were charged."""

    provider: str
    since: datetime | None
    until: datetime | None
    lines: list[StatementLine] = field(default_factory=list)

    @property
    def compute_cost(self) -> float | None:
        costs = [line.compute.compute_cost for line in self.lines
                 if line.compute is not None and line.compute.compute_cost is not None]
        return sum(costs) if costs else None

    @property
    def total(self) -> float:
        return sum(line.usage.cost for line in self.lines) + (self.compute_cost or 0.0)


def statements(rows: Sequence[UsageRow], since: datetime | None, until: datetime | None,
               compute: Sequence[ComputeRow] = ()) -> list[Statement]:
    """Statements from usage grouped by provider, model and deployment, and from the replica time
    of local models (``compute``). Requests that reached no provider owe nothing and are left out."""
    by_provider: dict[str, Statement] = {}
    lines: dict[tuple[str, str | None], StatementLine] = {}

    def line(provider: str, model: str | None) -> StatementLine:
        found = lines.get((provider, model))
        if found is None:
            statement = by_provider.setdefault(provider, Statement(provider=provider, since=since, until=until))
            found = lines[(provider, model)] = StatementLine(usage=UsageRow(provider=provider, model=model))
            statement.lines.append(found)
        return found

    for row in rows:
        if row.provider is None:
            continue
        found = line(row.provider, row.model)
        for name in SUMMED:
            setattr(found.usage, name, getattr(found.usage, name) + getattr(row, name))
        if row.deployment is not None and row.deployment not in found.deployments:
            found.deployments.append(row.deployment)
    for ran in compute:
        line(ran.provider, ran.model).compute = ran
    ordered = [by_provider[name] for name in sorted(by_provider)]
    for statement in ordered:
        statement.lines.sort(key=lambda found: (found.usage.model is None, found.usage.model or ""))
    return ordered


def statement_line_json(line: StatementLine) -> dict[str, Any]:
    row, compute = line.usage, line.compute
    return {"model": row.model, "deployments": line.deployments,
            **{name: getattr(row, name) for name in ("requests", *TOKEN_FIELDS)},
            "cost": _money(row.cost), "revenue": _money(row.revenue),
            "cache_hits": row.cache_hits, "saved": _money(row.saved),
            "replica_hours": round(compute.replica_hours, 6) if compute is not None else None,
            "per_replica_hour": compute.per_replica_hour if compute is not None else None,
            "compute_cost": (_money(compute.compute_cost)
                             if compute is not None and compute.compute_cost is not None else None)}


def statement_json(statement: Statement) -> dict[str, Any]:
    compute = statement.compute_cost
    return {"object": "statement", "provider": statement.provider, "since": _time(statement.since),
            "until": _time(statement.until), "lines": [statement_line_json(line) for line in statement.lines],
            "requests": sum(line.usage.requests for line in statement.lines),
            "revenue": _money(sum(line.usage.revenue for line in statement.lines)),
            "saved": _money(sum(line.usage.saved for line in statement.lines)),
            "compute_cost": _money(compute) if compute is not None else None,
            "total": _money(statement.total)}


def statements_csv(found: Sequence[Statement]) -> str:
    rows = [{"provider": s.provider, **line, "deployments": " ".join(line["deployments"])}
            for s in found for line in statement_json(s)["lines"]]
    return _csv(list(STATEMENT_FIELDS), rows)


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: "" if row.get(name) is None else row[name] for name in columns})
    return out.getvalue()


# -- reading report parameters (query string or CLI flags) -------------------------------------

# The longest value of each text parameter: the length of the column it is compared with.
TEXT_PARAMS = {
    "project": text_length(usage, "project"), "key": text_length(usage, "key_id"),
    "deployment": text_length(usage, "deployment"), "provider": text_length(usage, "provider"),
    "model": text_length(usage, "model"), "id": text_length(api_keys, "id"),
    "request_id": text_length(usage, "request_id"),
    "name": text_length(api_keys, "project"),
}


def text_param(value: str, name: str) -> str:
    """A text parameter (a filter, a name or id in a path) as the database can compare it: a
    400 naming it when it holds a NUL or is longer than its column."""
    problem = text_problem(value, TEXT_PARAMS[name])
    if problem is not None:
        raise InvalidRequest(f"'{name}' {problem}", param=name)
    return value


def parse_time(value: str, name: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC unless it names a zone), up to the year 9999."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        # OverflowError: a time whose UTC is past the year 9999.
        raise InvalidRequest(f"'{name}' must be an ISO date (2030-01-31) or date-time (2030-01-31T12:00:00Z) "
                             f"up to 9999-12-31, got {value!r}", param=name) from None


def parse_group_by(value: str | None) -> list[str]:
    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    for name in names:
        if name not in GROUP_BY:
            raise InvalidRequest(f"cannot group by {name!r}; use a comma-separated list of {', '.join(GROUP_BY)}",
                                 param="group_by")
    return list(dict.fromkeys(names))


def parse_period(value: str) -> tuple[datetime, datetime]:
    """A month (2030-01) or a day (2030-01-31) as [since, until), up to 9999-12."""
    try:
        if len(value) == 7:
            start = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
            end = (start + timedelta(days=32)).replace(day=1)
            return start, end
        start = parse_time(value, "period")
        return start, start + timedelta(days=1)
    except (ValueError, OverflowError, InvalidRequest):
        raise InvalidRequest(f"'period' must be a month (2030-01) or a day (2030-01-31) before 9999-12, "
                             f"got {value!r}", param="period") from None


def report_filters(params: dict[str, str]) -> UsageFilters:
    """Filters from parameters named as the CLI's flags: project, key, deployment, provider, model,
    since, until, period."""
    texts = {name: text_param(params[name], name) if params.get(name) is not None else None
             for name in ("project", "key", "deployment", "provider", "model")}
    filters = UsageFilters(project=texts["project"], key_id=texts["key"], deployment=texts["deployment"],
                           provider=texts["provider"], model=texts["model"])
    if params.get("period"):
        filters.since, filters.until = parse_period(params["period"])
    if params.get("since"):
        filters.since = parse_time(params["since"], "since")
    if params.get("until"):
        filters.until = parse_time(params["until"], "until")
    if filters.since and filters.until and filters.until <= filters.since:
        raise InvalidRequest("'until' must be after 'since' (until is exclusive)", param="until")
    return filters


def blocklist_json(entry: BlocklistEntry) -> dict[str, Any]:
    """A blocklist of the config with the terms and patterns in force, and where they come from."""
    return {"object": "blocklist", "name": entry.name, "terms": list(entry.terms), "patterns": list(entry.patterns),
            "source": entry.source, "updated_at": _time(entry.updated_at), "used_by": list(entry.used_by)}
