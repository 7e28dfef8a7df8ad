"""The vllm engine's child process: vLLM's own OpenAI-compatible server on one model folder.

    python -m modelgate.engines.vllm_worker --model FOLDER [--name NAME] [--max-concurrency N]
                                             [--n-ctx TOKENS] [--device cpu|cuda|auto]
                                             [--python PATH] [--vllm-arg=ARG ...]

It picks a free port of 127.0.0.1, starts ``PATH -m vllm.entrypoints.openai.api_server`` there
(``vllm_command``: the folder, the name answers carry, ``--max-num-seqs`` of max_concurrency,
``--max-model-len`` of the context window where one is set, then the deployment's own
``vllm.args``) under the interpreter vLLM is installed for (``vllm.python``; by default this
one), prints ``{"listening": PORT}`` and
waits for it: the gateway health-checks vLLM's own ``GET /health`` and sends requests to vLLM
directly, as to a llamacpp worker. vLLM's output passes through, for the gateway's log.

This process stands between the gateway and vLLM so that vLLM ends with it: on SIGTERM or SIGINT,
and when its stdin closes (the gateway is gone), vLLM gets SIGTERM, then SIGKILL after
``STOP_GRACE_S``; on Linux vLLM is also killed by the kernel if this process is. It exits with
vLLM's exit code (3: vLLM is not installed for that interpreter).

``device: cpu`` hides the GPUs from vLLM (``CUDA_VISIBLE_DEVICES`` empty), which then needs its
CPU build; ``cuda`` and ``auto`` leave vLLM to find them.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from modelgate.engines.parent_watch import on_parent_gone

SERVER = "vllm.entrypoints.openai.api_server"
STOP_GRACE_S = 8.0  # within the gateway's own grace for this process (replica.py)
INSTALL = "pip install 'modelgate[vllm]' (vLLM runs on a GPU, or from its CPU build)"
PR_SET_PDEATHSIG = 1


def vllm_command(model: str, name: str, port: int, max_concurrency: int, n_ctx: int, *,
                 python: str = sys.executable, extra: Sequence[str] = ()) -> list[str]:
    """The command line of vLLM's server for one model folder, on 127.0.0.1:``port``."""
    command = [python, "-m", SERVER, "--model", model, "--served-model-name", name,
               "--host", "127.0.0.1", "--port", str(port), "--max-num-seqs", str(max_concurrency)]
    if n_ctx:
        command += ["--max-model-len", str(n_ctx)]
    return command + list(extra)


def has_vllm(python: str) -> bool:
    """Whether vLLM can be imported by the interpreter ``python`` (found, not imported: that takes
    seconds)."""
    if python == sys.executable:
        return importlib.util.find_spec("vllm") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        return subprocess.run([python, "-c", probe], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def vllm_env(device: str, env: Mapping[str, str]) -> dict[str, str]:
    """vLLM's environment: this one, with the GPUs hidden for ``device: cpu``."""
    made = dict(env)
    if device == "cpu":
        made["CUDA_VISIBLE_DEVICES"] = ""
    return made


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now (vLLM binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when this process ends (Linux)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run(args: argparse.Namespace) -> int:
    if not has_vllm(args.python):
        where = "here" if args.python == sys.executable else f"for {args.python}"
        print(f"modelgate vllm engine: vLLM is not installed {where}; install it with: {INSTALL}",
              file=sys.stderr, flush=True)
        return 3
    port = free_port()
    server = subprocess.Popen(
        vllm_command(args.model, args.name, port, args.max_concurrency, args.n_ctx, python=args.python,
                     extra=args.vllm_arg),
        env=vllm_env(args.device, os.environ), stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    print(json.dumps({"listening": port}), flush=True)
    stopping = threading.Event()

    def stop() -> None:
        if stopping.is_set():
            return
        stopping.set()
        server.terminate()
        try:
            server.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            print(f"modelgate vllm engine: vLLM (pid {server.pid}) did not stop within {STOP_GRACE_S:g}s; "
                  "killing it", file=sys.stderr, flush=True)
            server.kill()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=stop, name="stop").start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.watch_stdin:
        on_parent_gone(stop)
    code = server.wait()
    return 0 if stopping.is_set() else _exit_code(code)


def _exit_code(code: int) -> int:
    """vLLM's exit code as this process's: a signal's as the shell says it (128 + its number)."""
    return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelgate.engines.vllm_worker")
    parser.add_argument("--model", required=True, help="the Hugging Face model folder")
    parser.add_argument("--name", default=None, help="the model's name in answers (default: the folder's name)")
    parser.add_argument("--max-concurrency", type=int, default=4, help="sequences vLLM runs at once")
    parser.add_argument("--n-ctx", type=int, default=0, help="context window in tokens; 0: the model's own")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--python", default=sys.executable, help="the interpreter vLLM is installed for")
    parser.add_argument("--vllm-arg", action="append", default=[], help="one more argument of vLLM's server")
    parser.add_argument("--watch-stdin", action="store_true", help="stop when stdin closes")
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = Path(args.model).name
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
