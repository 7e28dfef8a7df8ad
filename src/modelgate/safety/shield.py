"""The ``prompt_shield`` check: what a request sends to a model, scored for jailbreaks and prompt
injections by the classifier of shield_model.py.

What it reads, and how a finding is named (as Azure's Prompt Shields name them):

- the text of **user** messages: an attempt of the caller to override the model's instructions,
  ``jailbreak``;
- the text of **tool** messages (tool results, documents fetched by a tool): instructions planted
  in data the model reads, ``indirect_attack``.

System and developer messages are the operator's own instructions, never scored (an agent's system
prompt is full of "you are", "never", "ignore"); nor are the assistant's earlier turns.

One classifier serves every policy of the process (one per ``model:`` folder where checks name
their own ONNX classifier, shield_onnx.py). It is loaded on the first request that needs
it, in a worker thread, so the server starts at once and the event loop never waits on it; a
classifier that cannot be loaded makes each check fail, and the policy's ``on_error`` says
whether such requests pass unchecked or are refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from modelgate.schema.request import ChatRequest, TextPart

log = logging.getLogger("modelgate.safety")

JAILBREAK = "jailbreak"
INDIRECT_ATTACK = "indirect_attack"
# The roles whose text is scored, and the name of what is found in each.
SCORED_ROLES = {"user": JAILBREAK, "tool": INDIRECT_ATTACK}
# Scores of recent texts kept by their hash: a conversation sends its earlier turns again with
# each request, and each is scored once.
REMEMBERED = 4096


class ShieldUnavailable(RuntimeError):
    """The classifier cannot be loaded (a package missing, a conversion that failed)."""


class Classifier(Protocol):
    def score(self, text: str) -> float:
        """The text's score, 0 (benign) to 1 (an attack); blocks the thread."""
        ...


class Shield:
    """A classifier of the process, loaded once on first use by ``load`` from ``folder``: by
    default the all-MiniLM-L6-v2 model converted into the cache folder ``folder``; an ONNX
    classifier's folder with ``load=load_onnx`` (``model: PATH`` on the check)."""

    def __init__(self, folder: Path, load: Callable[[Path], Classifier] | None = None) -> None:
        self.folder = folder
        self._load = load or load_default
        self._model: Classifier | None = None
        self._failure: ShieldUnavailable | None = None
        self._lock = threading.Lock()
        self._known: OrderedDict[bytes, float] = OrderedDict()
        self._known_lock = threading.Lock()

    def model(self) -> Classifier:
        """The loaded classifier; ``ShieldUnavailable`` (the same each time) if it cannot load."""
        with self._lock:
            if self._model is None and self._failure is None:
                try:
                    self._model = self._load(self.folder)
                except ShieldUnavailable as problem:
                    log.error("the prompt shield cannot run: %s", problem)
                    self._failure = problem
            if self._failure is not None:
                raise self._failure
            assert self._model is not None
            return self._model

    def scores(self, texts: Sequence[str]) -> list[float]:
        """The score of each text, in the calling thread (blocking); a text scored lately is not
        scored again."""
        model = self.model()
        out = []
        for text in texts:
            key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            with self._known_lock:
                known = self._known.get(key)
                if known is not None:
                    self._known.move_to_end(key)
            if known is None:
                known = model.score(text)
                with self._known_lock:
                    self._known[key] = known
                    if len(self._known) > REMEMBERED:
                        self._known.popitem(last=False)
            out.append(known)
        return out

    async def ascores(self, texts: Sequence[str]) -> list[float]:
        """The score of each text, computed in a worker thread."""
        return await asyncio.to_thread(self.scores, texts)


def load_default(cache_dir: Path) -> Classifier:
    """The default classifier (shield_model.py), imported when first needed: numpy and llama.cpp
    are optional packages, which a gateway without the check never loads."""
    try:
        from modelgate.safety.shield_model import load_shield
    except ImportError as missing:
        raise ShieldUnavailable(f"prompt_shield needs numpy and llama-cpp-python ({missing}): pip install "
                                "'modelgate[local]'") from missing
    return load_shield(cache_dir)


def load_onnx(folder: Path) -> Classifier:
    """An ONNX classifier of one's own (shield_onnx.py), imported when first needed."""
    try:
        from modelgate.safety.shield_onnx import OnnxClassifier
    except ImportError as missing:
        raise ShieldUnavailable(f"a prompt_shield model: needs numpy, onnxruntime and tokenizers ({missing}): "
                                "pip install 'modelgate[shield-onnx]'") from missing
    return OnnxClassifier(folder)


def scored_texts(request: ChatRequest) -> list[tuple[str, str]]:
    """The texts of ``request`` the shield reads, each with the name of what it may hold."""
    return [(SCORED_ROLES[message.role], part.text)
            for message in request.messages if message.role in SCORED_ROLES
            for part in message.content if isinstance(part, TextPart) and part.text.strip()]
