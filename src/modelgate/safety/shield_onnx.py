"""A prompt-injection classifier of one's own for the prompt shield (``model: PATH`` on the check),
run by onnxruntime on CPU in place of the default (shield_model.py).

``PATH`` is a folder as Hugging Face tools export a sequence classifier to ONNX: ``model.onnx``
(inputs ``input_ids`` and ``attention_mask``, and ``token_type_ids`` where it takes them, each
int64 of shape [batch, tokens]; first output the logits, [batch, labels]), ``tokenizer.json`` (the
``tokenizers`` library's file) and ``config.json`` with ``id2label``. The score of a text is the
softmax probability of the attack label: the label whose name says INJECTION, JAILBREAK, ATTACK,
UNSAFE or MALICIOUS, else label 1 of two. A text longer than the model's positions (at most 512
tokens) is cut into windows that overlap by ``OVERLAP`` tokens and gets the highest score.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from modelgate.safety.shield import ShieldUnavailable
from modelgate.safety.shield_model import OVERLAP

ATTACK_WORDS = ("INJECTION", "JAILBREAK", "ATTACK", "UNSAFE", "MALICIOUS")
FILES = ("model.onnx", "tokenizer.json", "config.json")
MAX_TOKENS = 512


def missing_files(folder: Path) -> list[str]:
    """The files of an exported classifier that ``folder`` lacks."""
    return [name for name in FILES if not (folder / name).is_file()]


def attack_label(config: dict[str, Any]) -> int:
    labels = {int(index): str(name) for index, name in (config.get("id2label") or {}).items()}
    for index, name in sorted(labels.items()):
        if any(word in name.upper() for word in ATTACK_WORDS):
            return index
    if len(labels) == 2:
        return 1
    raise ShieldUnavailable(f"config.json's id2label ({labels or 'absent'}) names no attack label; name one "
                            f"with one of {', '.join(ATTACK_WORDS)}, or give two labels (1: the attack)")


class OnnxClassifier:
    """An exported sequence classifier, loaded: ``score(text)`` in 0..1."""

    def __init__(self, folder: Path) -> None:
        lacking = missing_files(folder)
        if lacking:
            raise ShieldUnavailable(f"{folder} lacks {', '.join(lacking)}: a prompt_shield model: is a folder "
                                    "with model.onnx, tokenizer.json and config.json")
        try:
            import onnxruntime  # type: ignore[import-untyped]  # the wheel has no type marker
            import tokenizers
        except ImportError as missing:
            raise ShieldUnavailable("a prompt_shield model: needs onnxruntime and tokenizers: pip install "
                                    "'modelgate[shield-onnx]'") from missing
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.attack = attack_label(config)
        try:
            self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"),
                                                        providers=["CPUExecutionProvider"])
            self.tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as problem:  # onnxruntime raises its own exception types for a bad file
            raise ShieldUnavailable(f"the prompt_shield model in {folder} could not be loaded: {problem}") from problem
        self.inputs = {i.name for i in self.session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= self.inputs:
            raise ShieldUnavailable(f"{folder}/model.onnx takes {', '.join(sorted(self.inputs))}; a prompt_shield "
                                    "model must take input_ids and attention_mask")
        length = min(int(config.get("max_position_embeddings") or MAX_TOKENS), MAX_TOKENS)
        self.tokenizer.enable_truncation(max_length=length, stride=OVERLAP)
        self.tokenizer.no_padding()
        self._lock = threading.Lock()

    def score(self, text: str) -> float:
        if not text.strip():
            return 0.0
        encoding = self.tokenizer.encode(text)
        best = 0.0
        for window in [encoding, *encoding.overflowing]:
            feeds = {"input_ids": np.array([window.ids], dtype=np.int64),
                     "attention_mask": np.array([window.attention_mask], dtype=np.int64)}
            if "token_type_ids" in self.inputs:
                feeds["token_type_ids"] = np.array([window.type_ids], dtype=np.int64)
            with self._lock:
                logits = np.asarray(self.session.run(None, feeds)[0], dtype=np.float64)[0]
            shifted = np.exp(logits - logits.max())
            best = max(best, float(shifted[self.attack] / shifted.sum()))
        return best
