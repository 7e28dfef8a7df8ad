"""The gateway's database: projects and keys, usage records, prices (SQLite or PostgreSQL).

    Storage.open(database_url)        engine for sqlite:///PATH or postgresql://...
    storage.prepare() / upgrade()     numbered migrations (migrations.py)
    storage.keys                      projects and keys (keys.py)
    storage.deployments               deployments made through the admin API (deployments.py)
    storage.blocklists                content-policy lists set through the admin API (blocklists.py)
    storage.cache_clears              clears of the response cache, for processes without Redis (cache_clears.py)
    storage.write_usage(records)      idempotent by request id; StorageUnavailable when down,
                                      DataRejected when the database refuses a value
    storage.spend / query_usage       budgets and reports (usage.py)
    storage.prices                    the versioned price table (prices.py)
    storage.secrets                   secrets every process shares: the sealing key (secrets.py)
    storage.replica_hours             local models' replica runs and their cost (replica_hours.py)
    storage.request_log               each request's record, origin, attempts and payloads, searched
                                      newest first (request_log.py)
    storage.evals                     evaluation runs and each item's answer and scores (evals.py)
    ResponseStore(storage.db)         stored responses, written behind the requests (responses.py)
    RevisionFollower                  a process's copy of keys or deployments kept at the stored
                                      revision: announced over Redis, polled (revisions.py)

Storage imports nothing of the project but ``config.settings`` (for prices) and the Redis client
(for announcing revisions), and is imported by auth, metering, the admin surface and the CLI.
Nothing on the request path waits for it.
"""

from modelgate.storage.blocklists import BlocklistChanges, BlocklistRecord
from modelgate.storage.deployments import DeploymentChanges, DeploymentRecord
from modelgate.storage.errors import (
    AlreadyExists,
    DataRejected,
    RecordNotFound,
    SchemaOutdated,
    StorageError,
    StorageUnavailable,
)
from modelgate.storage.prices import PriceKey, prices_from_settings
from modelgate.storage.records import (
    GROUP_BY,
    KeyChanges,
    KeyRecord,
    LimitFields,
    PriceEntry,
    ProjectRecord,
    RequestFilters,
    RequestLogEntry,
    UsageFilters,
    UsageRecord,
    UsageRow,
)
from modelgate.storage.replica_hours import ComputeRow, ReplicaRun
from modelgate.storage.request_log import InvalidCursor
from modelgate.storage.responses import ResponseStore, StoredResponse
from modelgate.storage.store import Storage

__all__ = [
    "GROUP_BY",
    "AlreadyExists",
    "BlocklistChanges",
    "BlocklistRecord",
    "ComputeRow",
    "DataRejected",
    "DeploymentChanges",
    "DeploymentRecord",
    "InvalidCursor",
    "KeyChanges",
    "KeyRecord",
    "LimitFields",
    "PriceEntry",
    "PriceKey",
    "ProjectRecord",
    "RecordNotFound",
    "ReplicaRun",
    "RequestFilters",
    "RequestLogEntry",
    "ResponseStore",
    "SchemaOutdated",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "StoredResponse",
    "UsageFilters",
    "UsageRecord",
    "UsageRow",
    "prices_from_settings",
]
