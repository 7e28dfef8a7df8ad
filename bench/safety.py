"""How often the content-safety checks are right, and what they cost on the request path.

Over the labelled set bench/safety/eval.jsonl, each check of src/modelgate/safety/ is compiled
from a policy as the gateway compiles it (action ``annotate``, so that nothing is refused) and
run as the stage runs it on a request (``check_request``), one request per line:

- detection: true-positive rate (labelled lines it flags; for pii, lines where it finds every
  entity of the label) and false-positive rate (lines labelled clean that it flags); for pii,
  the same per entity;
- latency per request, p50 and p99, in this process, and its mean per 1,000 characters.

Then the CPU the checks add to a request, per 1,000 characters: all pii entities and a 10-term
blocklist on both sides over three texts (prose without digits, with a few, dense with numbers),
on the request, on a whole answer and on an answer streamed in 4-character chunks; and the whole
chain timed in-process with the real stage before a stand-in upstream: no safety stage, the stage
for a deployment that names no policy, and one that names the policy, answers whole and streamed.

    python bench/safety.py             # about a minute
    python bench/safety.py --smoke     # seconds: every figure produced once, no precision (CI)

prompt_shield is measured where its classifier loads (llama.cpp and the model's wheel installed);
otherwise its section says it is skipped and why. Its requests are timed once each (the shield
remembers the texts it has scored), and its CPU per 1,000 characters is bench/prompt_shield/latency.py's.
This script reports figures and fails only when one is not produced, never on a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from modelgate.auth import Principal
from modelgate.config import ConfigError, parse_settings
from modelgate.config.safety import ENTITIES
from modelgate.pipeline.contract import Call, Handler, build_chain
from modelgate.safety import ContentSafety, Policy, Shield, compile_policies
from modelgate.safety.shield import ShieldUnavailable
from modelgate.safety.stage import ChoiceGuard, check_request, check_request_shielded
from modelgate.schema.events import Event, Finish, Start, TextDelta, Usage
from modelgate.schema.request import ChatRequest, Message, TextPart
from modelgate.schema.verdicts import SafetyReport, Verdict

EVAL_SET = Path(__file__).resolve().parent / "safety" / "eval.jsonl"
CHECKS = ("pii", "blocklist", "prompt_shield")

# The CPU section's policy: every pii entity and a 10-term blocklist, on both sides.
TERMS = ["project falcon", "kestrel", "osprey", "internal only", "confidential", "codename hawk", "red team",
         "acquisition", "merger", "layoffs"]
FULL_CHECKS = [{"check": "pii", "action": "redact"}, {"check": "blocklist", "action": "block", "terms": TERMS}]
PROSE = ("The quarterly report shows revenue grew by 12 percent, driven by new customers in Europe and Asia. "
         "Please summarise the main points for the board, keep it short and use plain language. ")
NUMBERS = ("Order 48213 shipped on 2024-03-05 for 129.99 EUR, invoice INV-2024-0042, 3 items, ticket 7731, "
           "v2.4.1 at 10:45. ")
TEXTS = {
    "prose, no digits": (PROSE.replace("12", "twelve") * 8)[:1000],
    "prose, a few digits": (PROSE * 8)[:1000],
    "dense with numbers": (NUMBERS * 12)[:1000],
}


@dataclass(frozen=True)
class Plan:
    latency_rounds: int  # times each line's request is checked for the latency figures
    cpu_calls: int  # calls per measurement of the CPU section
    cpu_runs: int  # measurements, the best of which is kept
    chain_calls: int


FULL = Plan(latency_rounds=30, cpu_calls=400, cpu_runs=7, chain_calls=4000)
SMOKE = Plan(latency_rounds=1, cpu_calls=5, cpu_runs=1, chain_calls=50)


def compile_policy(checks: list[dict[str, Any]], shield: Shield | None = None) -> Policy:
    """One policy of ``checks`` on the input side, compiled as the gateway compiles its config."""
    settings = parse_settings({"safety": {"policies": {"eval": {"input": checks}}}}, {})
    return compile_policies(settings.safety, shields={None: shield} if shield else None)["eval"]


def read_set() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines()]


def request_of(line: dict[str, Any]) -> ChatRequest:
    role = line.get("role", "user")
    message = Message(role, [TextPart(line["text"])], tool_call_id="call_1" if role == "tool" else None)
    return ChatRequest(model="eval", messages=[message])


def checked(request: ChatRequest, policy: Policy) -> list[Verdict]:
    """The request checked as the stage checks it (the prompt shield's checks awaited)."""
    return asyncio.run(check_request_shielded(request, policy)) if policy.shielded else check_request(request, policy)


def found_by(request: ChatRequest, policy: Policy) -> set[str]:
    """What the policy's checks found in the request (entity kinds, list names, attacks)."""
    return {label for verdict in checked(request, policy) for label in verdict.found}


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


def rate(hits: int, out_of: int) -> str:
    return f"{hits / out_of:.1%} ({hits}/{out_of})" if out_of else "n/a"


def evaluate(lines: list[dict[str, Any]], policies: list[Policy], plan: Plan) -> dict[str, Any]:
    """One check over its lines (``policies[i]`` for ``lines[i]``): detection and latency."""
    requests = [request_of(line) for line in lines]
    found: list[set[str]] = []
    first: list[float] = []
    for request, policy in zip(requests, policies, strict=True):
        start = time.perf_counter()
        found.append(found_by(request, policy))
        first.append(time.perf_counter() - start)
    if "entities" in lines[0]:
        expected = [set(line["entities"]) for line in lines]
        positive = [bool(e) for e in expected]
        detected = [bool(e) and e <= f for e, f in zip(expected, found, strict=True)]
    else:
        positive = [line["flagged"] for line in lines]
        detected = [bool(f) for f in found]
    flagged = [bool(f) for f in found]
    times: list[float] = []
    # The prompt shield remembers the texts it has scored: only its first pass is timed.
    rounds = 0 if policies[0].shielded else plan.latency_rounds
    for _ in range(rounds):
        for request, policy in zip(requests, policies, strict=True):
            start = time.perf_counter()
            check_request(request, policy)
            times.append(time.perf_counter() - start)
    times = sorted(times or first)
    characters = sum(len(line["text"]) for line in lines) * max(1, rounds)
    missed = [line["id"] for line, p, d in zip(lines, positive, detected, strict=True) if p and not d]
    false = [line["id"] for line, p, f in zip(lines, positive, flagged, strict=True) if not p and f]
    return {
        "lines": len(lines), "positives": sum(positive),
        "tpr": rate(sum(d for p, d in zip(positive, detected, strict=True) if p), sum(positive)),
        "fpr": rate(len(false), len(positive) - sum(positive)),
        "p50_us": round(percentile(times, 0.50) * 1e6, 1), "p99_us": round(percentile(times, 0.99) * 1e6, 1),
        "mean_chars": round(characters / len(times)),
        "missed": missed, "false_positives": false,
        "found": found, "expected": [set(line.get("entities", ())) for line in lines],
    }


def per_entity(result: dict[str, Any]) -> dict[str, dict[str, str]]:
    table = {}
    for entity in ENTITIES:
        has = [entity in e for e in result["expected"]]
        hit = [entity in f for f in result["found"]]
        table[entity] = {"tpr": rate(sum(h for x, h in zip(has, hit, strict=True) if x), sum(has)),
                         "fpr": rate(sum(h for x, h in zip(has, hit, strict=True) if not x), len(has) - sum(has))}
    return table


def shield_policy() -> Policy | str:
    """The prompt_shield check compiled with the default classifier, loaded; or why it cannot run."""
    shield = Shield(Path(tempfile.gettempdir()) / "modelgate-bench" / "prompt-shield")
    try:
        shield.model()
        return compile_policy([{"check": "prompt_shield", "action": "annotate"}], shield)
    except ShieldUnavailable as problem:
        return f"the classifier cannot be loaded: {problem}"
    except ConfigError as refused:
        return str(refused).splitlines()[1].strip()


def detection(lines: list[dict[str, Any]], plan: Plan, shield: Policy | str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pii_lines = [line for line in lines if line["check"] == "pii"]
    pii = compile_policy([{"check": "pii", "action": "annotate"}])
    out["pii"] = evaluate(pii_lines, [pii] * len(pii_lines), plan)
    out["pii"]["entities"] = per_entity(out["pii"])
    blocklist_lines = [line for line in lines if line["check"] == "blocklist"]
    compiled: dict[str, Policy] = {}
    policies = []
    for line in blocklist_lines:
        entries = {"terms": line.get("terms", []), "patterns": line.get("patterns", [])}
        key = json.dumps(entries)
        if key not in compiled:
            compiled[key] = compile_policy([{"check": "blocklist", "action": "annotate", **entries}])
        policies.append(compiled[key])
    out["blocklist"] = evaluate(blocklist_lines, policies, plan)
    shield_lines = [line for line in lines if line["check"] == "prompt_shield"]
    if isinstance(shield, str):
        out["prompt_shield"] = {"skipped": shield}
    else:
        out["prompt_shield"] = evaluate(shield_lines, [shield] * len(shield_lines), plan)
    for result in out.values():
        result.pop("found", None)
        result.pop("expected", None)
    return out


def best_mean_us(work: Callable[[], object], calls: int, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def a_request(text: str, stream: bool = False) -> ChatRequest:
    return ChatRequest(model="checked", stream=stream,
                       messages=[Message("system", [TextPart("You are a helpful assistant.")]),
                                 Message("user", [TextPart(text)])])


def check_cpu(plan: Plan, shield: Policy | None) -> dict[str, dict[str, float]]:
    """Microseconds per request of 1,000 characters: each check alone on the request, then all
    pii entities and the blocklist together on the request, on a whole answer and on a streamed one."""
    both = compile_policies(parse_settings(
        {"safety": {"policies": {"full": {"input": FULL_CHECKS, "output": FULL_CHECKS}}}}, {}).safety)["full"]
    alone = {"pii": compile_policy([{"check": "pii", "action": "annotate"}]),
             "blocklist": compile_policy([{"check": "blocklist", "action": "annotate", "terms": TERMS}])}
    if shield is not None:
        alone["prompt_shield"] = shield

    def answer(text: str, chunk: int | None) -> None:
        guard = ChoiceGuard(0, both, chunk is not None, SafetyReport("full"))
        step = chunk or len(text)
        for start in range(0, len(text), step):
            guard.text(text[start:start + step])
        guard.finish(None)

    def on_request(text: str, policy: Policy) -> float:
        checked = best_mean_us(lambda: check_request(a_request(text), policy), plan.cpu_calls, plan.cpu_runs)
        return round(checked - best_mean_us(lambda: a_request(text), plan.cpu_calls, plan.cpu_runs), 1)

    out = {}
    for name, text in TEXTS.items():
        row = {f"{check}_us": on_request(text, policy) for check, policy in alone.items()}
        row["input_us"] = on_request(text, both)
        row["output_us"] = round(best_mean_us(partial(answer, text, None), plan.cpu_calls, plan.cpu_runs), 1)
        row["streamed_us"] = round(best_mean_us(partial(answer, text, 4), max(1, plan.cpu_calls // 10),
                                                plan.cpu_runs), 1)
        out[name] = row
    return out


def stand_in(answer: list[Event]) -> Handler:
    """The terminal of the chain: an upstream that answers at once, with no network."""
    async def upstream(call: Call) -> AsyncGenerator[Event, None]:
        for event in answer:
            yield event
    return upstream


def answer_events(text: str, deltas: int) -> list[Event]:
    size = -(-len(text) // deltas)
    pieces: list[Event] = [TextDelta(text[i:i + size]) for i in range(0, len(text), size)]
    return [Start(model="gpt-4o"), *pieces, Finish("stop"), Usage(input_tokens=250, output_tokens=250)]


async def chain_cpu(plan: Plan) -> dict[str, Any]:
    """CPU microseconds per call of the chain with the stage, over the chain without it; and the
    stage's own time for a deployment without a policy, which is below the chain's noise."""
    settings = parse_settings({
        "providers": {"openai": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}},
        "safety": {"policies": {"full": {"input": FULL_CHECKS, "output": FULL_CHECKS}}},
        "deployments": [{"name": "checked", "provider": "openai", "model": "gpt-4o", "safety": "full"},
                        {"name": "plain", "provider": "openai", "model": "gpt-4o"}]}, {})
    stage = ContentSafety(compile_policies(settings.safety))
    text = TEXTS["prose, a few digits"]
    principal = Principal(key_id="master")

    async def run(chain: Handler, deployment: str, stream: bool) -> float:
        cpu = time.process_time()
        for n in range(plan.chain_calls):
            call = Call(request_id=f"req_{n}", request=a_request(text, stream),
                        deployment=settings.deployments[deployment], principal=principal)
            async for _ in chain(call):
                pass
        return (time.process_time() - cpu) / plan.chain_calls * 1e6

    out: dict[str, Any] = {}
    call = Call(request_id="req", request=a_request(text), deployment=settings.deployments["plain"],
                principal=principal)
    unused = stand_in([])(call)  # what the next stage hands back; the stage returns it as it is

    def next_stage(call: Call) -> AsyncGenerator[Event, None]:
        return unused

    calls = plan.chain_calls * 25
    out["stage_alone_ns"] = round(best_mean_us(lambda: stage(call, next_stage), calls, plan.cpu_runs) * 1000)
    await unused.aclose()
    for shape, deltas in (("whole", 1), ("streamed", 64)):
        end = stand_in(answer_events(text, deltas))
        variants = {"no safety stage": (build_chain([], end), "plain"),
                    "stage, no policy": (build_chain([stage], end), "plain"),
                    "stage, policy": (build_chain([stage], end), "checked")}
        best: dict[str, float] = {}
        for _ in range(max(1, plan.cpu_runs // 2)):  # interleaved rounds, the best of each
            for name, (chain, deployment) in variants.items():
                cpu = await run(chain, deployment, deltas > 1)
                best[name] = min(best.get(name, float("inf")), cpu)
        bare = best["no safety stage"]
        out[shape] = {name: round(cpu - bare, 2) if name != "no safety stage" else round(cpu, 1)
                      for name, cpu in best.items()}
    return out


def markdown(results: dict[str, Any]) -> Iterable[str]:
    sizes = results["set"]
    yield (f"Set: {sizes['lines']} lines of bench/safety/eval.jsonl ({sizes['pii']} pii, {sizes['blocklist']} "
           f"blocklist, {sizes['prompt_shield']} prompt_shield); {results['machine']}")
    yield ""
    yield "| check | lines (labelled positive) | true positives | false positives | p50 | p99 | mean length |"
    yield "|---|---|---|---|---|---|---|"
    for check in CHECKS:
        r = results["detection"][check]
        if "skipped" in r:
            yield f"| {check} | skipped: {r['skipped']} | | | | | |"
            continue
        yield (f"| {check} | {r['lines']} ({r['positives']}) | {r['tpr']} | {r['fpr']} | {r['p50_us']} µs "
               f"| {r['p99_us']} µs | {r['mean_chars']} characters |")
    yield ""
    yield "| pii entity | true positives | false positives |"
    yield "|---|---|---|"
    for entity, r in results["detection"]["pii"]["entities"].items():
        yield f"| {entity} | {r['tpr']} | {r['fpr']} |"
    for check in CHECKS:
        r = results["detection"][check]
        if r.get("missed") or r.get("false_positives"):
            yield f"\n{check}: missed {r['missed']}, false positives {r['false_positives']}"
    yield ""
    cpu = results["check_cpu"]
    yield ("CPU per request of 1,000 characters (aims: 0.1 ms for the regular-expression checks, 15 ms for "
           "the CPU classifier):")
    yield ""
    alone = [key[:-3] for key in next(iter(cpu.values())) if key[:-3] in CHECKS]
    yield ("| text of 1,000 characters | " + " | ".join(f"{c} alone, input" for c in alone)
           + " | pii + blocklist: input | output, whole | output, streamed (4-character chunks) |")
    yield "|---" * (len(alone) + 4) + "|"
    for name, r in cpu.items():
        yield (f"| {name} | " + " | ".join(f"{r[c + '_us']} µs" for c in alone)
               + f" | {r['input_us']} µs | {r['output_us']} µs | {r['streamed_us']} µs |")
    yield ""
    yield "| chain, in-process, CPU per call | answer whole | answer streamed (64 deltas) |"
    yield "|---|---|---|"
    chain = results["chain_cpu"]
    yield f"| no safety stage | {chain['whole']['no safety stage']} µs | {chain['streamed']['no safety stage']} µs |"
    for name in ("stage, no policy", "stage, policy"):
        yield f"| {name}: added | {chain['whole'][name]:+} µs | {chain['streamed'][name]:+} µs |"
    yield ""
    yield f"The stage for a deployment without a policy, timed alone: {chain['stage_alone_ns']} ns per call."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="every figure once, in seconds (CI)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    plan = SMOKE if args.smoke else FULL
    lines = read_set()
    shield = shield_policy()
    results: dict[str, Any] = {
        "set": {"lines": len(lines), **{c: sum(line["check"] == c for line in lines) for c in CHECKS}},
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "smoke": args.smoke,
        "detection": detection(lines, plan, shield),
        "check_cpu": check_cpu(plan, None),  # the shield's: bench/prompt_shield/latency.py
    }
    results["chain_cpu"] = asyncio.run(chain_cpu(plan))
    print("\n".join(markdown(results)))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
