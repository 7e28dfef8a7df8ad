"""``modelgate models``: the model store of the config's ``local`` provider (catalog/model_store.py).

``add PATH`` registers a GGUF file or a Hugging Face model folder with the facts read from it (a
sentence-transformers folder of a BERT model is converted to a GGUF embedding model on the way, and
with ``--gguf`` a Llama-family folder to a GGUF chat model; ``--precision`` f16 or f32),
``list`` shows them (``--json``: the manifest's entries), ``rm NAME`` takes one out and deletes its
files. Only the config's ``providers:`` is read, so that a deployment naming a model not yet added
does not stop it being added.

Exit status: 0 done, 1 the store's folder could not be read or written, 2 a problem with what was
given (the config, the path, the name).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from modelgate.catalog.model_store import LocalModel, ModelStore

DEFAULT_CONFIG = "modelgate.yaml"
LOCAL_EXAMPLE = "providers:\n  local: {type: local, models_dir: ./models}"


def add_model_commands(commands: Any) -> None:
    """Add ``models`` to the ``modelgate`` parser's subparsers; each command sets ``args.handler``."""
    models = commands.add_parser("models", help="the model store: models this installation runs itself")
    actions = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)

    def command(name: str, help: str, run: Callable[[argparse.Namespace, ModelStore], int]) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help, description=help)
        parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default: {DEFAULT_CONFIG})")
        parser.add_argument("--provider", help="the local provider whose store this is (when the config has several)")
        parser.set_defaults(handler=lambda args: _run(run, args))
        return parser

    add = command("add", "register a GGUF file or a Hugging Face model folder", _add)
    add.add_argument("path", help="a .gguf file, or a folder with config.json (as save_pretrained writes it)")
    add.add_argument("--name", help="the name deployments use as model: (default: from the file's name)")
    add.add_argument("--precision", choices=("f16", "f32"), default="f16",
                     help="the float type of the GGUF file a folder is converted to (default: f16, half the "
                          "size, a loss no answer shows)")
    add.add_argument("--gguf", action="store_true",
                     help="convert a Llama-family folder (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) "
                          "to a GGUF file, for engine: llamacpp or ray (without: the folder is kept, for engine: "
                          "vllm)")
    add.add_argument("--json", action="store_true", help="print the model's entry as JSON")
    listing = command("list", "list the models in the store", _list)
    listing.add_argument("--json", action="store_true")
    remove = command("rm", "remove a model from the store and delete its files", _remove)
    remove.add_argument("name", help="the model's name, from `modelgate models list`")


def _run(run: Callable[[argparse.Namespace, ModelStore], int], args: argparse.Namespace) -> int:
    from modelgate.catalog.model_store import ModelStoreError

    try:
        store = _store(args.config, args.provider)
        return run(args, store)
    except (_Refused, ModelStoreError) as error:
        print(f"modelgate: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        print(f"modelgate: {error.strerror or error}{where}", file=sys.stderr)
        return 1


class _Refused(Exception):
    """The config gives no store to work on."""


def _store(config: str, provider: str | None) -> ModelStore:
    from modelgate.catalog.model_store import ModelStore
    from modelgate.config import ConfigError
    from modelgate.config.loader import load_providers
    from modelgate.config.providers import LOCAL

    try:
        providers = load_providers(config, os.environ)
    except ConfigError as error:
        raise _Refused(str(error)) from None
    local = {name: p for name, p in providers.items() if p.type == LOCAL}
    if provider is not None:
        if provider not in local:
            raise _Refused(f"{config} has no provider '{provider}' of type {LOCAL} "
                           f"(those it has: {', '.join(local) or 'none'})")
        chosen = local[provider]
    elif len(local) == 1:
        chosen = next(iter(local.values()))
    elif not local:
        raise _Refused(f"{config} has no provider of type {LOCAL} to keep models for; add one:\n{LOCAL_EXAMPLE}")
    else:
        raise _Refused(f"{config} has {len(local)} providers of type {LOCAL} ({', '.join(local)}); "
                       "say which with --provider NAME")
    assert chosen.models_dir is not None
    return ModelStore(chosen.models_dir)


def _add(args: argparse.Namespace, store: ModelStore) -> int:
    model = store.add(args.path, args.name, precision=args.precision, gguf=args.gguf)
    if args.json:
        print(orjson.dumps(model.to_json()).decode())
        return 0
    facts = [model.architecture or "unknown architecture", f"{_count(model.parameters)} parameters",
             model.quantization or "-", f"context {_cell(model.context_length)}",
             "embedding model" if model.mode == "embedding" else "tools" if model.supports_tools else "no tools",
             _size(model.size_bytes)]
    print(f"added {model.name} ({', '.join(facts)}) to {store.models_dir}")
    if model.converted_from is not None:
        print(f"converted from {model.converted_from} to {model.path.name}")
    print(f"sha256 {model.sha256}")
    print(f"use it in a deployment: {{name: {model.name}, provider: local, model: {model.name}}}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace, store: ModelStore) -> int:
    models = store.list()
    if args.json:
        print(orjson.dumps({"object": "list", "data": [m.to_json() for m in models]}).decode())
        return 0
    if not models:
        print(f"no models in {store.models_dir}; add one with `modelgate models add PATH`", file=sys.stderr)
        return 0
    rows: list[tuple[str, ...]] = [
        ("NAME", "FORMAT", "ARCHITECTURE", "PARAMS", "QUANT", "CONTEXT", "TOOLS", "MODE", "SIZE", "SHA256")]
    rows.extend(_row(model) for model in models)
    _print_table(rows)
    return 0


def _remove(args: argparse.Namespace, store: ModelStore) -> int:
    model = store.remove(args.name)
    print(f"removed {model.name} and deleted {model.path}")
    return 0


def _row(model: LocalModel) -> tuple[str, ...]:
    return (model.name, model.format, model.architecture or "-", _count(model.parameters),
            model.quantization or "-", _cell(model.context_length), "yes" if model.supports_tools else "no",
            model.mode, _size(model.size_bytes), (model.sha256 or "-")[:12])


def _count(value: int | None) -> str:
    """A parameter count as model names give it: 135M, 8.0B."""
    if value is None:
        return "-"
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return str(value)


def _size(value: int) -> str:
    if value < 1024:
        return f"{value} B"
    size = value / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
