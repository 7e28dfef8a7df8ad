"""Anthropic Messages requests: validation like the real API, prompt caching, and the :class:`Prompt` view.

Pure functions, no I/O (the cache and signer are passed in). Error texts copy Anthropic's where known
(protocols.md §3, §7.2-7.3, §7.9, §7.13).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from modelgate.simulator.replies import Prompt, ToolMode, ToolSpec, fingerprint
from modelgate.simulator.state import BoundedSet, Signer
from modelgate.simulator.surface import SimError
from modelgate.simulator.tokens import MESSAGE_OVERHEAD_TOKENS, canonical_json, count_tokens, tool_tokens

THINKING = "anthropic-thinking"
REDACTED = "anthropic-redacted"
_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_MIN_THINKING_BUDGET = 1024
_THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


def _invalid(message: str) -> SimError:
    return SimError(400, message)


def blocks_of(content: Any) -> list[dict[str, Any]]:
    """Message content as a block list (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def block_text(block: dict[str, Any]) -> str:
    """The text a block contributes to the prompt (and to the token count)."""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return f"{block.get('name', '')} {canonical_json(block.get('input') or {})}"
    if kind == "tool_result":
        return " ".join(block_text(b) for b in blocks_of(block.get("content")))
    return ""


def thinking_requested(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def validate(body: dict[str, Any], signer: Signer, *, require_max_tokens: bool = True) -> list[dict[str, Any]]:
    """Check the request as Anthropic does; returns the messages. Raises :class:`SimError` (400)."""
    if require_max_tokens and not isinstance(body.get("max_tokens"), int):
        raise _invalid("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages: Field required" if messages is None else "messages: at least one message is required")
    _check_thinking_config(body)
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _invalid(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        _check_blocks(index, message, signer, final=index == len(messages) - 1)
    if messages[0]["role"] != "user":
        raise _invalid('messages: first message must use the "user" role')
    _check_tool_pairs(messages)
    if thinking_requested(body):
        _check_thinking_leads_tool_use(messages)
    return messages


def _check_thinking_config(body: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        if thinking_requested(body):
            _check_forced_tool(body)
        return
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        raise _invalid("thinking.enabled.budget_tokens: Field required")
    if budget < _MIN_THINKING_BUDGET:
        raise _invalid(
            f"thinking.enabled.budget_tokens: Input should be greater than or equal to {_MIN_THINKING_BUDGET}"
        )
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and budget >= max_tokens:
        raise _invalid(
            f"`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
            f"{_THINKING_DOCS}#max-tokens-and-context-window-size"
        )
    _check_forced_tool(body)


def _check_forced_tool(body: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise _invalid("Thinking may not be enabled when tool_choice forces tool use.")


def _check_blocks(index: int, message: dict[str, Any], signer: Signer, *, final: bool) -> None:
    content = message.get("content")
    if content in ("", []) and not (final and message["role"] == "assistant"):
        raise _invalid(
            f"messages.{index}: all messages must have non-empty content except for the optional final "
            "assistant message"
        )
    for position, block in enumerate(blocks_of(content)):
        where = f"messages.{index}.content.{position}"
        kind = block.get("type")
        if kind == "text" and not str(block.get("text", "")):
            raise _invalid("messages: text content blocks must be non-empty")
        if kind == "tool_use" and not _TOOL_ID.match(str(block.get("id", ""))):
            raise _invalid(f"{where}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if kind == "thinking":
            if "signature" not in block:
                raise _invalid(f"{where}.thinking.signature: Field required")
            if not signer.verify(THINKING, str(block.get("thinking", "")), block["signature"]):
                raise _invalid(f"{where}: Invalid `signature` in `thinking` block")
        if kind == "redacted_thinking" and not verify_redacted(signer, block.get("data")):
            raise _invalid(f"{where}: Invalid `data` in `redacted_thinking` block")


def _check_tool_pairs(messages: list[dict[str, Any]]) -> None:
    seen_ids: set[str] = set()
    for index, message in enumerate(messages):
        blocks = blocks_of(message.get("content"))
        if message["role"] == "assistant":
            ids = [str(b.get("id")) for b in blocks if b.get("type") == "tool_use"]
            if seen_ids.intersection(ids) or len(set(ids)) != len(ids):
                raise _invalid("messages: `tool_use` ids must be unique")
            seen_ids.update(ids)
            if not ids:
                continue
            following = messages[index + 1] if index + 1 < len(messages) else None
            if following is None:
                continue  # a trailing assistant turn is a prefill; nothing answers it yet
            results = blocks_of(following.get("content")) if following["role"] == "user" else []
            leading = []
            for block in results:
                if block.get("type") != "tool_result":
                    break
                leading.append(str(block.get("tool_use_id")))
            missing = [i for i in ids if i not in leading]
            if missing:
                raise _invalid(
                    f"messages.{index + 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` "
                    "block in the next message."
                )
        else:
            previous = messages[index - 1] if index else None
            offered = (
                {str(b.get("id")) for b in blocks_of(previous.get("content")) if b.get("type") == "tool_use"}
                if previous is not None and previous["role"] == "assistant"
                else set()
            )
            for position, block in enumerate(blocks):
                if block.get("type") == "tool_result" and str(block.get("tool_use_id")) not in offered:
                    raise _invalid(
                        f"messages.{index}.content.{position}: unexpected `tool_use_id` found in `tool_result` "
                        f"blocks: {block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message."
                    )


def _check_thinking_leads_tool_use(messages: list[dict[str, Any]]) -> None:
    # Only the last assistant turn of an in-progress tool loop must open with its thinking block.
    for index in range(len(messages) - 1, -1, -1):
        if messages[index]["role"] != "assistant":
            continue
        blocks = blocks_of(messages[index].get("content"))
        if any(b.get("type") == "tool_use" for b in blocks) and index + 1 < len(messages):
            first = blocks[0].get("type")
            if first not in ("thinking", "redacted_thinking"):
                raise _invalid(
                    f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    f"`{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking "
                    "block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you "
                    "include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. "
                    f"Please consult our documentation at {_THINKING_DOCS}"
                )
        return


def redacted_data(signer: Signer, nonce: str) -> str:
    return f"{nonce}.{signer.sign(REDACTED, nonce)}"


def verify_redacted(signer: Signer, data: Any) -> bool:
    nonce, _, signature = str(data).partition(".")
    return signer.verify(REDACTED, nonce, signature)


@dataclass(frozen=True)
class PromptUsage:
    """Anthropic input accounting: ``input_tokens`` excludes both cache figures."""

    input_tokens: int
    cache_creation: int = 0
    cache_read: int = 0
    cache_ttl: str = "5m"

    @property
    def total(self) -> int:
        return self.input_tokens + self.cache_creation + self.cache_read


@dataclass(frozen=True)
class _Item:
    tokens: int
    material: str
    cache_control: dict[str, Any] | None


def _items(body: dict[str, Any], messages: list[dict[str, Any]]) -> list[_Item]:
    """The prompt in cache order (tools, system, messages), one item per block plus per-message overhead."""
    items: list[_Item] = []
    for tool in _custom_tools(body):
        items.append(
            _Item(
                tool_tokens(tool.name, tool.description, tool.schema),
                f"tool:{tool.name}",
                _control(tool_body(body, tool.name)),
            )
        )
    system = body.get("system")
    if system:
        items.append(_Item(MESSAGE_OVERHEAD_TOKENS, "system", None))
        for block in blocks_of(system):
            items.append(_Item(count_tokens(block_text(block)), _material(block), _control(block)))
    for message in messages:
        items.append(_Item(MESSAGE_OVERHEAD_TOKENS, f"role:{message['role']}", None))
        for block in blocks_of(message.get("content")):
            items.append(_Item(count_tokens(block_text(block)), _material(block), _control(block)))
    if isinstance(body.get("cache_control"), dict) and items:
        # Top-level automatic caching puts the breakpoint on the last cacheable block.
        last = items[-1]
        items[-1] = _Item(last.tokens, last.material, body["cache_control"])
    return items


def _material(block: dict[str, Any]) -> str:
    return canonical_json({k: v for k, v in block.items() if k != "cache_control"})


def _control(block: dict[str, Any] | None) -> dict[str, Any] | None:
    control = (block or {}).get("cache_control")
    return control if isinstance(control, dict) else None


def prompt_usage(
    body: dict[str, Any], messages: list[dict[str, Any]], model: str, cache: BoundedSet | None
) -> PromptUsage:
    """Token accounting with simulated prompt caching: the first time a ``cache_control`` prefix is seen it is
    a cache write, afterwards a cache read. ``cache=None`` (count_tokens) counts without caching."""
    items = _items(body, messages)
    total = sum(item.tokens for item in items)
    if cache is None:
        return PromptUsage(input_tokens=total)
    digest = hashlib.sha256(model.encode())
    prefixes: list[tuple[str, int, dict[str, Any]]] = []
    running = 0
    for item in items:
        digest.update(item.material.encode() + b"\0")
        running += item.tokens
        if item.cache_control is not None:
            prefixes.append((digest.hexdigest(), running, item.cache_control))
    if not prefixes:
        return PromptUsage(input_tokens=total)
    read = max((tokens for key, tokens, _ in prefixes if key in cache), default=0)
    write = max(prefixes[-1][1] - read, 0)
    for key, _, _ in prefixes:
        cache.add(key)
    ttl = "1h" if prefixes[-1][2].get("ttl") == "1h" else "5m"
    return PromptUsage(input_tokens=total - read - write, cache_creation=write, cache_read=read, cache_ttl=ttl)


def tool_body(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name") == name), None)


def _custom_tools(body: dict[str, Any]) -> list[ToolSpec]:
    tools = []
    for index, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            continue  # server tools (web_search_..., bash_...) are accepted but never called
        if not tool.get("name"):
            raise _invalid(f"tools.{index}.custom.name: Field required")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _invalid(f"tools.{index}.custom.input_schema: Field required")
        tools.append(ToolSpec(name=str(tool["name"]), description=str(tool.get("description") or ""), schema=schema))
    return tools


def _tool_choice(body: dict[str, Any]) -> tuple[ToolMode, str | None, bool]:
    choice = body.get("tool_choice") or {}
    parallel = not choice.get("disable_parallel_tool_use", False)
    kind = choice.get("type", "auto")
    if kind == "none":
        return "none", None, parallel
    if kind == "any":
        return "required", None, parallel
    if kind == "tool":
        return "required", choice.get("name"), parallel
    return "auto", None, parallel


def to_prompt(
    body: dict[str, Any], messages: list[dict[str, Any]], model: str, usage: PromptUsage, safety: bool
) -> Prompt:
    last = messages[-1]
    results = [block_text(b) for b in blocks_of(last.get("content")) if b.get("type") == "tool_result"]
    user_text = ""
    for message in reversed(messages):
        texts = [block_text(b) for b in blocks_of(message.get("content")) if b.get("type") == "text"]
        if message["role"] == "user" and texts:
            user_text = " ".join(texts)
            break
    mode, forced, parallel = _tool_choice(body)
    output_format = (body.get("output_config") or {}).get("format") or {}
    schema = output_format.get("schema") if output_format.get("type") == "json_schema" else None
    stop = [s for s in body.get("stop_sequences") or [] if isinstance(s, str)]
    return Prompt(
        model=model,
        last_user_text=user_text,
        fingerprint=fingerprint(body, "stream"),
        prompt_tokens=usage.total,
        tool_results=results if last["role"] == "user" else [],
        tools=_custom_tools(body),
        tool_mode=mode,
        forced_tool=forced,
        parallel_tools=parallel,
        max_tokens=int(body["max_tokens"]),
        stop=stop,
        json_schema=schema if isinstance(schema, dict) else None,
        reasoning=thinking_requested(body),
        safety=safety,
    )
