from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from modelgate.providers.transport import HTTPClient
from modelgate.simulator import SimConfig, SimulatorThread
from tests.local_models import (  # noqa: F401  (fixtures: the real SmolLM2 GGUF, the real all-MiniLM-L6-v2 folder)
    llama_folder,
    llama_store,
    minilm_folder,
    minilm_store,
    smollm2_gguf,
)
from tests.openai_spec import OpenAISpec, load_spec
from tests.services import (  # noqa: F401  (fixtures: real PostgreSQL and Redis, fresh databases)
    database_url,
    migrated_database_url,
    postgres_server,
    postgres_url,
    redis_url,
    sqlite_url,
    storage,
)


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorThread]:
    """One provider simulator for the whole session, accepting the key "sk-sim"."""
    with SimulatorThread(SimConfig.from_dict({"api_key": "sk-sim"})) as simulator:
        yield simulator


@pytest.fixture(scope="session")
def openai_spec() -> OpenAISpec:
    return load_spec()


@pytest.fixture
async def http() -> AsyncIterator[HTTPClient]:
    """The upstream HTTP client the gateway's providers use, for tests that drive a provider directly."""
    client = HTTPClient()
    yield client
    await client.close()
