"""Facts from a Hugging Face model folder, as ``save_pretrained`` writes it.

``config.json`` gives the architecture (``architectures``, else ``model_type``), the context length
(``max_position_embeddings``, or the older names for it) and the weights' type (``torch_dtype``, or
``quantization_config.quant_method`` for a quantized model); multimodal models keep these in
``text_config``. The chat template is ``chat_template.jinja`` or ``tokenizer_config.json``'s
``chat_template``. The parameter count is read from the ``*.safetensors`` headers (the shapes of
the tensors), never from the weights.

The folder is untrusted: JSON files and safetensors headers are read only up to a size limit, and
a file that is missing what is needed ends in an ``HFModelError`` naming it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelgate.catalog.chat_template import renders_tools
from modelgate.catalog.weights import WeightsError, read_header

__all__ = ["HFInfo", "HFModelError", "read_hf_folder"]

MAX_JSON_BYTES = 16 * 1024 * 1024
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
# Files that only a sentence-transformers (embedding) model has.
_EMBEDDING_FILES = ("config_sentence_transformers.json", "modules.json")


class HFModelError(ValueError):
    """The folder is no model this reader can use; the message names the file and the problem."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HFInfo:
    architecture: str | None
    parameters: int | None
    quantization: str | None
    context_length: int | None
    embedding_length: int | None
    chat_template: str | None
    supports_tools: bool
    embedding: bool


def read_hf_folder(folder: str | Path) -> HFInfo:
    """The facts of the model in ``folder``; ``HFModelError`` when it has no ``config.json`` to read."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise HFModelError(f"{folder} has no config.json: give a GGUF file or a Hugging Face model folder "
                           "(config.json and *.safetensors, as save_pretrained writes them)")
    config = _json(config_file)
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else {}
    architectures = config.get("architectures")
    architecture = (architectures[0] if isinstance(architectures, list) and architectures
                    and isinstance(architectures[0], str) else _str(config.get("model_type")))
    templates = _templates(folder)
    embedding = any((folder / name).is_file() for name in _EMBEDDING_FILES) or (
        architecture is not None and not templates and not architecture.endswith(
            ("ForCausalLM", "ForConditionalGeneration")))
    return HFInfo(
        architecture=architecture,
        parameters=_parameters(folder),
        quantization=_quantization(config, text),
        context_length=next((v for key in _CONTEXT_KEYS for v in (_int(config.get(key)), _int(text.get(key))) if v),
                            None),
        embedding_length=_int(config.get("hidden_size")) or _int(text.get("hidden_size")),
        chat_template=templates[0] if templates else None,
        supports_tools=any(renders_tools(t) for t in templates),
        embedding=embedding,
    )


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise HFModelError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_JSON_BYTES:
        raise HFModelError(f"{path} is over {MAX_JSON_BYTES // (1024 * 1024)} MiB; is it the model's own file?")
    return data


def _json(path: Path) -> dict[str, Any]:
    data = _read(path)
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise HFModelError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HFModelError(f"{path} is not a JSON object")
    return value


def _templates(folder: Path) -> list[str]:
    """The chat templates, the default first: chat_template.jinja, then tokenizer_config.json's."""
    found: list[str] = []
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        found.append(_read(jinja).decode("utf-8", errors="replace"))
    tokenizer = folder / "tokenizer_config.json"
    if tokenizer.is_file():
        template = _json(tokenizer).get("chat_template")
        if isinstance(template, str):
            found.append(template)
        elif isinstance(template, list):  # named templates: [{"name": "default", "template": "..."}, ...]
            named = [t for t in template if isinstance(t, dict) and isinstance(t.get("template"), str)]
            named.sort(key=lambda t: t.get("name") != "default")
            found.extend(t["template"] for t in named)
    return [t for t in found if t]


def _quantization(config: dict[str, Any], text: dict[str, Any]) -> str | None:
    quantized = config.get("quantization_config")
    if isinstance(quantized, dict) and isinstance(quantized.get("quant_method"), str):
        return str(quantized["quant_method"]).upper()
    dtype = config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype") or text.get("dtype")
    return _DTYPES.get(dtype, dtype.upper()) if isinstance(dtype, str) else None


def _parameters(folder: Path) -> int | None:
    """The sum of the tensors' sizes in the safetensors headers; None without safetensors files."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        try:
            header, _, _ = read_header(path)
        except WeightsError as error:
            raise HFModelError(str(error)) from None
        for name, tensor in header.items():
            shape = tensor.get("shape") if isinstance(tensor, dict) else None
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise HFModelError(f"{path}: tensor {name} has no valid shape")
            total += math.prod(shape)
    return total


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
