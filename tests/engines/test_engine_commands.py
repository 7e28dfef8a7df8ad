"""How the gateway launches each engine's child process: the command lines, and what a child that
cannot start says.

vLLM is not installed in the gateway's own environment here (``test_vllm_engine.py`` runs the real
one, from an environment of its own): the engine's command line is checked as the gateway builds
it, and the worker is run for real up to where it finds no vLLM, through a pool, so the message a
client gets is the one checked. One test runs the whole launch path with a stand-in for vLLM's
server (``tests/fixtures/vllm_standin``: it answers with the command line it was given, and is no
model).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest

from modelgate.engines.models import ModelFile
from modelgate.engines.pool import ReplicaPool
from modelgate.engines.replica import EngineSpec
from modelgate.engines.settings import EngineSettings, RaySettings
from modelgate.engines.vllm_worker import vllm_command, vllm_env
from modelgate.schema.errors import UpstreamError
from tests.engines.conftest import vllm_servers
from tests.support import DEADLINE_S, eventually, gateway_in_thread, wait_until

STANDIN = Path(__file__).resolve().parents[1] / "fixtures" / "vllm_standin"
NO_VLLM = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A model folder as the vllm engine is given one (config.json; vLLM is not run on it here)."""
    path = tmp_path / "tiny-llama"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    return path


def test_the_llamacpp_worker_gets_the_model_and_the_deployments_settings() -> None:
    spec = EngineSpec(ModelFile("smol", Path("/models/smol.gguf")),
                      EngineSettings(max_concurrency=3, device="cpu"), context_window=2048)
    assert spec.command() == [sys.executable, "-m", "modelgate.engines.llamacpp_worker", "--model",
                              "/models/smol.gguf", "--name", "smol", "--max-concurrency", "3", "--n-ctx", "2048",
                              "--device", "cpu", "--watch-stdin"]
    assert spec.slots == 3


def test_the_vllm_worker_gets_the_folder_and_runs_vllms_openai_server(folder: Path) -> None:
    spec = EngineSpec(ModelFile("tiny", folder), EngineSettings(engine="vllm", max_concurrency=8, device="cuda"),
                      context_window=4096)
    assert spec.command() == [sys.executable, "-m", "modelgate.engines.vllm_worker", "--model", str(folder),
                              "--name", "tiny", "--max-concurrency", "8", "--n-ctx", "4096", "--device", "cuda",
                              "--watch-stdin"]
    # What that worker runs: vLLM's own server on loopback, the deployment's settings as vLLM names them.
    assert vllm_command(str(folder), "tiny", 41000, 8, 4096) == [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
        "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", "41000", "--max-num-seqs", "8",
        "--max-model-len", "4096"]
    assert "--max-model-len" not in vllm_command(str(folder), "tiny", 41000, 8, 0)  # the model's own
    assert vllm_env("cpu", {"PATH": "/bin"}) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": ""}
    assert vllm_env("cuda", {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "1"}) == {"PATH": "/bin",
                                                                               "CUDA_VISIBLE_DEVICES": "1"}


def test_the_ray_driver_gets_the_cluster_and_the_autoscaling() -> None:
    ray = RaySettings(address="10.0.0.5:6379", min_replicas=0, max_replicas=4, target_ongoing_requests=1.5)
    spec = EngineSpec(ModelFile("smol", Path("/models/smol.gguf")),
                      EngineSettings(engine="ray", max_concurrency=2, ray=ray), context_window=None)
    command = spec.command()
    assert command[:3] == [sys.executable, "-m", "modelgate.engines.ray_driver"]
    assert command[command.index("--app") + 1] == spec.app_name
    assert command[command.index("--app") + 2:] == [
        "--address", "10.0.0.5:6379", "--min-replicas", "0", "--max-replicas", "4",
        "--target-ongoing-requests", "1.5"]
    assert spec.slots == 8  # two at once on each of up to four Ray replicas


def test_the_ray_application_name_is_one_per_model_and_settings() -> None:
    def name(path: str = "/models/SmolLM2.Q4_1.gguf", **ray: Any) -> str:
        settings = EngineSettings(engine="ray", ray=RaySettings(**ray))
        return EngineSpec(ModelFile("SmolLM2.Q4_1", Path(path)), settings).app_name

    assert name().startswith("modelgate-smollm2-q4-1-")
    assert name() == name()  # every gateway process deploys (and shares) the same application
    assert name(max_replicas=2) != name()
    assert name("/other/SmolLM2.Q4_1.gguf") != name()


@NO_VLLM
def test_the_vllm_worker_without_vllm_says_how_to_install_it(folder: Path) -> None:
    spec = EngineSpec(ModelFile("tiny", folder), EngineSettings(engine="vllm"))
    done = subprocess.run(spec.command(), input="", capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert ("modelgate vllm engine: vLLM is not installed here; install it with: pip install 'modelgate[vllm]'"
            in done.stderr)


@NO_VLLM
async def test_a_pool_whose_engine_cannot_start_refuses_with_503_saying_why(folder: Path) -> None:
    spec = EngineSpec(ModelFile("tiny", folder), EngineSettings(engine="vllm"))
    pool = ReplicaPool(spec, "local", backoff=(5.0, 5.0))
    await pool.start()
    try:
        with pytest.raises(UpstreamError) as waited:
            await pool.acquire(30)  # waits for the first start, and fails with it
        await eventually(lambda: pool.failure is not None, what="the failed start")
        with pytest.raises(UpstreamError) as refused:
            await pool.acquire(30)  # refused at once until the next try
    finally:
        await pool.stop()
    for error in (waited.value, refused.value):
        assert error.status == 503 and error.retry_after is not None and 1 <= error.retry_after <= 7
        assert ("local model 'tiny' could not be started (modelgate vllm engine: vLLM is not installed here; install "
                "it with: pip install 'modelgate[vllm]'") in error.message


@pytest.mark.parametrize("engine", ["llamacpp", "ray"])
async def test_a_ready_replica_is_probed_unless_ray_serve_checks_it(engine: str, monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    spec = EngineSpec(ModelFile("smol", Path("/models/smol.gguf")),
                      EngineSettings(engine=engine, health_interval=0.01, health_timeout=0.01))
    replica = ReplicaPool(spec, "local").replicas[0]
    probes: list[float] = []
    ended = asyncio.Event()

    async def answers(within: float) -> bool:
        probes.append(within)
        return True

    async def exited() -> int:
        await ended.wait()
        return 0

    monkeypatch.setattr(replica, "answers", answers)
    monkeypatch.setattr(replica, "exited", exited)
    watching = asyncio.ensure_future(ReplicaPool(spec, "local")._watch(replica))
    await asyncio.sleep(0.2)
    assert not watching.done()
    # A probe of the ray engine's application would go through its Ray replicas (behind their
    # requests, or scaling them up from none): Ray Serve checks those itself.
    assert (probes != []) == (engine == "llamacpp")
    ended.set()
    assert await watching == (0, None)


def test_a_vllm_deployment_runs_vllms_server_with_its_settings(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(STANDIN))  # the config finds "vLLM" installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(STANDIN), os.environ.get("PYTHONPATH")) if p))
    config = {"providers": {"local": {"type": "local"}},
              "deployments": [{"name": "tiny", "provider": "local", "model": str(folder), "engine": "vllm",
                               "context_window": 1024, "max_concurrency": 3, "device": "cpu"}]}
    with gateway_in_thread(config) as gateway:
        sdk = openai.OpenAI(base_url=gateway.v1, api_key="none", max_retries=0, timeout=60)
        raw = sdk.chat.completions.with_raw_response.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        answer = raw.parse()
        said = json.loads(answer.choices[0].message.content or "")
        argv = said["argv"]
        assert argv[argv.index("--model") + 1] == str(folder)
        assert argv[argv.index("--served-model-name") + 1] == "tiny-llama"
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert argv[argv.index("--max-num-seqs") + 1] == "3"
        assert argv[argv.index("--max-model-len") + 1] == "1024"
        assert said["cuda_visible_devices"] == ""  # device: cpu
        assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (7, 3)
        assert raw.headers["x-modelgate-model"] == "tiny-llama"
        assert len(vllm_servers(folder)) == 1
        # vLLM's server reads tool calls only with a parser chosen for the model: tools are refused here.
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                        tools=[{"type": "function", "function": {"name": "get_time"}}])
        assert refused.value.code == "tools_not_supported"
        assert "runs on engine vllm, which does not run tools" in refused.value.message
    wait_until(lambda: not vllm_servers(folder), DEADLINE_S, "the vLLM server's end with the gateway")
