"""The settings object: built once at start-up from the config file and passed down.

Nothing reads the environment after start-up; everything configurable is here. Each field of
``Settings`` is a top-level key of the config file; a section is a dataclass in a module of its own
(routing.py, deployments.py, ...) whose fields are its keys (fields.py reads them). Sections are
read in the order of the fields here, so that one may refer to those above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from modelgate.config.budgets import BudgetsSettings
from modelgate.config.cache import CacheSettings
from modelgate.config.deployments import (
    CAPABILITIES,
    STRATEGIES,
    DeploymentSettings,
    PriceSettings,
    ReasoningSettings,
    TargetSettings,
    read_deployments,
)
from modelgate.config.fields import Key, nonempty
from modelgate.config.limits import LimitsSettings
from modelgate.config.providers import read_providers
from modelgate.config.request_log import RequestLogSettings
from modelgate.config.responses import ResponsesSettings
from modelgate.config.routing import RoutingSettings
from modelgate.config.safety import SafetySettings
from modelgate.config.secret import secret_problem
from modelgate.config.server import ServerSettings
from modelgate.config.telemetry import TelemetrySettings
from modelgate.providers.settings import ProviderSettings

__all__ = [
    "CAPABILITIES",
    "STRATEGIES",
    "BudgetsSettings",
    "DeploymentSettings",
    "LimitsSettings",
    "PriceSettings",
    "ProviderSettings",
    "ReasoningSettings",
    "ResponsesSettings",
    "RoutingSettings",
    "SafetySettings",
    "ServerSettings",
    "Settings",
    "TargetSettings",
    "TelemetrySettings",
]


@dataclass(slots=True, kw_only=True)
class Settings:
    master_key: Annotated[str | None, Key("a string", nonempty(
        "is empty; set a secret value or remove the key to run without auth"))] = None
    providers: Annotated[dict[str, ProviderSettings], Key(read=read_providers)] = field(default_factory=dict)
    # Before deployments:, whose safety: names one of its policies.
    safety: SafetySettings = field(default_factory=SafetySettings)
    deployments: Annotated[dict[str, DeploymentSettings], Key(read=read_deployments)] = field(default_factory=dict)
    database_url: Annotated[str, Key("a URL string")] = "sqlite:///modelgate.db"
    redis_url: Annotated[str | None, Key("a URL string")] = None
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    budgets: BudgetsSettings = field(default_factory=BudgetsSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    responses: ResponsesSettings = field(default_factory=ResponsesSettings)
    request_log: RequestLogSettings = field(default_factory=RequestLogSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    # How the process writes its log lines: "text", or "json" (one object per line, with the
    # request id, trace id and span id where there is a request; telemetry/logs.py).
    log_format: Annotated[str, Key("text or json", lambda v: None if v in ("text", "json") else
                                   "must be text or json")] = "text"
    # What the state handed to clients is sealed with (pipeline/sealing.py); unset: a key made at
    # the first start and kept in the database, shared by every process on it.
    secret_key: Annotated[str | None, Key("a string of at least 32 characters", secret_problem)] = None
    # Where usage records wait while the database cannot be reached (metering/journal.py).
    journal_dir: Annotated[str, Key("a directory path", nonempty(
        "is empty; name a directory or remove the key for ./journal"))] = "./journal"
    # The file these settings were read from, absolute (None: built from a mapping, as tests do). No
    # config key: it names the file in messages and is the folder relative paths of deployments made
    # through the admin API are taken from, as the file's own are.
    config_file: str | None = field(default=None, init=False, compare=False)
    # Where derived files are kept (the prompt shield's converted model): MODELGATE_CACHE_DIR, else
    # $XDG_CACHE_HOME/modelgate or ~/.cache/modelgate, read from the environment with the config.
    # None: no folder could be named (no HOME); such files go to the system's temporary folder.
    cache_dir: str | None = field(default=None, init=False, compare=False)
