"""CPU of the content-safety checks on the request path, per request, in this process.

The policy is all pii entities and a 10-term blocklist on both sides (the heaviest this build
runs). Three texts of 1,000 characters: prose without digits, prose with a few, and text dense
with numbers (dates, amounts, references), which is what makes the number finders run. Each
figure is the best of seven runs of the mean over many calls, in microseconds:

- input: the checks over a request (a system prompt and the text as the user turn);
- output, whole: an answer of the text checked as a non-streamed answer is;
- output, streamed: the same answer in chunks of 4 characters, held back (``stream_hold_back``);
- no policy: the stage's cost for a deployment that names none.

    python bench/safety_cpu.py

This is a script that reports figures, not a test: nothing here fails CI.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable

from modelgate.auth import Principal
from modelgate.config import parse_settings
from modelgate.pipeline.contract import Call
from modelgate.safety import ContentSafety, compile_policies
from modelgate.safety.stage import ChoiceGuard, check_request
from modelgate.schema.events import Event
from modelgate.schema.request import ChatRequest, Message, TextPart
from modelgate.schema.verdicts import SafetyReport

TERMS = ["project falcon", "kestrel", "osprey", "internal only", "confidential", "codename hawk", "red team",
         "acquisition", "merger", "layoffs"]
PROSE = ("The quarterly report shows revenue grew by 12 percent, driven by new customers in Europe and Asia. "
         "Please summarise the main points for the board, keep it short and use plain language. ")
NUMBERS = ("Order 48213 shipped on 2024-03-05 for 129.99 EUR, invoice INV-2024-0042, 3 items, ticket 7731, "
           "v2.4.1 at 10:45. ")
TEXTS = {
    "prose, no digits": (PROSE.replace("12", "twelve") * 8)[:1000],
    "prose, a few digits": (PROSE * 8)[:1000],
    "dense with numbers": (NUMBERS * 12)[:1000],
}
CHECKS = [{"check": "pii", "action": "redact"}, {"check": "blocklist", "action": "block", "terms": TERMS}]
SETTINGS = parse_settings({
    "providers": {"openai": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}},
    "safety": {"policies": {"full": {"input": CHECKS, "output": CHECKS}}},
    "deployments": [{"name": "checked", "provider": "openai", "model": "gpt-4o", "safety": "full"},
                    {"name": "plain", "provider": "openai", "model": "gpt-4o"}]}, {})
POLICY = compile_policies(SETTINGS.safety)["full"]


def best_mean_us(work: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def request(text: str) -> ChatRequest:
    return ChatRequest(model="checked", messages=[Message("system", [TextPart("You are a helpful assistant.")]),
                                                  Message("user", [TextPart(text)])])


def answer(text: str, chunk: int | None) -> None:
    guard = ChoiceGuard(0, POLICY, chunk is not None, SafetyReport("full"))
    for start in range(0, len(text), chunk or len(text)):
        guard.text(text[start:start + (chunk or len(text))])
    guard.finish(None)


async def upstream() -> AsyncGenerator[Event, None]:
    return
    yield


def measure(text: str) -> str:
    checked_input = best_mean_us(lambda: check_request(request(text), POLICY), 400)
    building = best_mean_us(lambda: request(text), 400)
    whole = best_mean_us(lambda: answer(text, None), 400)
    streamed = best_mean_us(lambda: answer(text, 4), 40)
    return f"{checked_input - building:>9.1f} {whole:>9.1f} {streamed:>10.1f}"


def main() -> None:
    print(f"{'text (1,000 characters)':<24} {'input':>9} {'output':>9} {'streamed':>10}   (us per request)")
    for name, text in TEXTS.items():
        print(f"{name:<24} {measure(text)}")
    stage = ContentSafety(compile_policies(SETTINGS.safety))
    call = Call(request_id="req-1", request=request(""), deployment=SETTINGS.deployments["plain"],
                principal=Principal(key_id="master"))
    events = upstream()  # what the next handler returns; never iterated here

    def terminal(call: Call) -> AsyncGenerator[Event, None]:
        return events

    print(f"no policy: {best_mean_us(lambda: stage(call, terminal), 100_000) * 1000:.0f} ns per request")


if __name__ == "__main__":
    main()
