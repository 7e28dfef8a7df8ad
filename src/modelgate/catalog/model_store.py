"""The model store: the models this installation runs itself, kept in one folder (``models_dir``).

Each model sits in a folder of its own named after it, ``models_dir/NAME/`` (a GGUF file, or the
files of a Hugging Face model folder), and ``models_dir/manifest.json`` lists them with the facts
read from the model when it was added::

    {"version": 1, "models": [{"name": ..., "path": "NAME/file.gguf", "format": "gguf", ...}, ...]}

Paths in the manifest are relative to ``models_dir``, so the folder can be moved whole. The
manifest is written to a new file renamed over the old one, so a reader sees the old list or the
new one, never half of one; changes hold a lock on ``models_dir/.lock`` so that two ``add`` at once
both land.

Adding a model hard-links its files into the store, and copies them where a link cannot be made
(another file system, or one without links). A link takes no space and no time, which matters for
files of many gigabytes, and unlike a symbolic link it keeps the model whole when the original is
moved or deleted. The store's copy is never written to; replacing the original file (as a
download does) leaves the linked one as it was.

``resolve`` also takes a GGUF file or a model folder that is not in the store: its facts are read
from it there and then, and it has no sha256 (hashing gigabytes at every start would be slow).

A sentence-transformers folder of a BERT model is not linked but converted (``bert_gguf.py``):
the store keeps the GGUF file written from it, in f16 unless f32 is asked for, so that the
llamacpp engine serves it as an embedding model; the entry's ``converted_from`` names the folder.
A folder of a Llama-family chat model is converted the same way (``llama_gguf.py``) when ``gguf``
is asked for, so that the llamacpp and ray engines serve it; without, it is kept as it is, for
vllm. Any other folder is kept as it is (for engines that load Hugging Face folders).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from modelgate.catalog.bert_gguf import convert_sentence_bert, is_sentence_bert
from modelgate.catalog.conversion import ConversionError, Precision
from modelgate.catalog.facts import ModelFacts
from modelgate.catalog.gguf import GGUFError, read_gguf
from modelgate.catalog.hf_model import HFModelError, read_hf_folder
from modelgate.catalog.llama_gguf import ARCHITECTURES, convert_llama, is_llama

__all__ = ["LocalModel", "ModelStore", "ModelStoreError", "default_name"]

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NAME_RULE = "1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
_CHUNK = 1024 * 1024


class ModelStoreError(Exception):
    """What the store cannot do with what it was given; the message names the fix."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalModel:
    """A model this installation can run, and what was read from it."""

    name: str
    path: Path  # the GGUF file, or the Hugging Face model folder
    format: Literal["gguf", "hf"]
    architecture: str | None
    parameters: int | None
    quantization: str | None  # a GGUF file type (Q4_1, Q8_0, F16), or a folder's weight type (BF16, AWQ)
    context_length: int | None
    chat_template: str | None
    supports_tools: bool  # the chat template renders a tools list
    size_bytes: int
    sha256: str | None  # of the file; of a folder, of its files' names and hashes; None outside the store
    embedding_length: int | None = None
    mode: Literal["chat", "embedding"] = "chat"
    converted_from: str | None = None  # the folder a GGUF file was converted from by ``add``

    def facts(self) -> ModelFacts:
        """The model's catalog entry: what the built-in catalog says of an API model."""
        if self.mode == "embedding":
            return ModelFacts(context_window=self.context_length, capabilities=("embeddings",), mode="embedding")
        capabilities = ["chat", "streaming"]
        if self.supports_tools:
            capabilities.append("tools")
        if self.chat_template and "<think>" in self.chat_template:
            capabilities.append("reasoning")
        return ModelFacts(context_window=self.context_length, capabilities=tuple(capabilities))

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The manifest's entry (``path`` relative to ``relative_to`` when given), or ``--json`` output."""
        body = asdict(self)
        body["path"] = str(self.path.relative_to(relative_to) if relative_to else self.path)
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any], folder: Path) -> LocalModel:
        return cls(**{**body, "path": folder / body["path"]})


def read_model(path: Path, name: str) -> LocalModel:
    """A GGUF file's or a model folder's facts, under ``name``; no sha256 yet."""
    try:
        if path.is_dir():
            hf = read_hf_folder(path)
            return LocalModel(
                name=name, path=path, format="hf", architecture=hf.architecture, parameters=hf.parameters,
                quantization=hf.quantization, context_length=hf.context_length, chat_template=hf.chat_template,
                supports_tools=hf.supports_tools, size_bytes=sum(f.stat().st_size for f in _files(path)),
                sha256=None, embedding_length=hf.embedding_length, mode="embedding" if hf.embedding else "chat")
        if not path.is_file():  # a device or a pipe would be read without end
            raise ModelStoreError(f"{path} is not a regular file; give a GGUF file or a model folder")
        gguf = read_gguf(path)
    except (GGUFError, HFModelError) as exc:
        raise ModelStoreError(str(exc)) from None
    return LocalModel(
        name=name, path=path, format="gguf", architecture=gguf.architecture, parameters=gguf.parameters,
        quantization=gguf.quantization, context_length=gguf.context_length, chat_template=gguf.chat_template,
        supports_tools=gguf.supports_tools, size_bytes=path.stat().st_size, sha256=None,
        embedding_length=gguf.embedding_length, mode="embedding" if gguf.embedding else "chat")


def default_name(path: Path, quantization: str | None = None) -> str:
    """A store name from a file's or folder's own name: ``SmolLM2-135M-Instruct.Q4_1.gguf`` → ``smollm2-135m-instruct``.

    A GGUF file's quantization at the end of its name is left out (it is a fact of the entry).
    """
    stem = path.name if path.is_dir() else path.stem
    if quantization and stem.lower().endswith(quantization.lower()):
        stem = stem[: -len(quantization)].rstrip(".-_") or stem
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")
    return name[:128] or "model"


class ModelStore:
    """The models in ``models_dir``; relative paths given to ``add`` and ``resolve`` are taken
    relative to ``relative_to`` (the config file's folder), else the current directory."""

    def __init__(self, models_dir: str | os.PathLike[str], *, relative_to: str | os.PathLike[str] | None = None):
        self.models_dir = Path(models_dir).expanduser().absolute()
        self.relative_to = Path(relative_to).absolute() if relative_to is not None else None
        self.manifest = self.models_dir / MANIFEST

    def __repr__(self) -> str:
        return f"ModelStore({str(self.models_dir)!r})"

    # -- reading -------------------------------------------------------------------------------

    def list(self) -> builtins.list[LocalModel]:
        return list(self._read().values())

    def get(self, name: str) -> LocalModel | None:
        return self._read().get(name)

    def resolve(self, name_or_path: str) -> LocalModel:
        """The model a deployment's ``model:`` names: a name in the store, a GGUF file or a model folder."""
        model = self.get(name_or_path)
        if model is not None:
            if not model.path.exists():
                raise ModelStoreError(
                    f"model '{model.name}' is in {self.manifest} but {model.path} is gone; "
                    f"remove it with `modelgate models rm {model.name}` and add it again")
            return model
        path = self._path(name_or_path)
        if not path.exists():
            known = ", ".join(sorted(self._read())) or "none yet"
            raise ModelStoreError(
                f"'{name_or_path}' is no model in the store at {self.models_dir} (it has: {known}) nor a GGUF file or "
                f"model folder at {path}; add one with `modelgate models add PATH --name {name_or_path}`, or give the "
                "path of a file or folder on this machine")
        return read_model(path, default_name(path))

    def _path(self, given: str | os.PathLike[str]) -> Path:
        path = Path(given).expanduser()
        if not path.is_absolute() and self.relative_to is not None:
            path = self.relative_to / path
        return path.absolute()

    def _read(self) -> dict[str, LocalModel]:
        try:
            text = self.manifest.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ModelStoreError(f"cannot read {self.manifest}: {exc.strerror or exc}") from exc
        try:
            body = json.loads(text)
            if body.get("version") != MANIFEST_VERSION:
                raise ModelStoreError(f"{self.manifest} is version {body.get('version')!r}; this modelgate "
                                      f"reads version {MANIFEST_VERSION}")
            return {entry["name"]: LocalModel.from_json(entry, self.models_dir) for entry in body["models"]}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelStoreError(f"{self.manifest} is damaged ({type(exc).__name__}: {exc}); move it away "
                                  "and add the models in the folder again") from None

    # -- changing ------------------------------------------------------------------------------

    def add(self, path: str | os.PathLike[str], name: str | None = None, *, precision: Precision = "f16",
            gguf: bool = False) -> LocalModel:
        """Register a GGUF file or a Hugging Face model folder under ``name`` (default: from its own
        name); a sentence-transformers BERT folder, and with ``gguf`` a Llama-family folder, is
        converted to a GGUF file of ``precision``."""
        source = self._path(path)
        if not source.exists():
            raise ModelStoreError(f"{source}: no such file or folder; give a GGUF file or a model folder")
        model = read_model(source, name or "")
        convert = model.format == "hf" and (is_sentence_bert(source) or gguf)
        if gguf and model.format == "hf" and not is_llama(source) and not is_sentence_bert(source):
            raise ModelStoreError(f"{source} is a {model.architecture or 'model of no stated architecture'} folder; "
                                  f"--gguf converts {', '.join(ARCHITECTURES)} folders and sentence-transformers "
                                  "BERT folders only (convert others with llama.cpp's convert_hf_to_gguf.py, or "
                                  "add the folder without --gguf for engine: vllm)")
        name = name or default_name(source, model.quantization if model.format == "gguf" else None)
        if not NAME.fullmatch(name) or name in (MANIFEST, ".lock"):
            raise ModelStoreError(f"'{name}' cannot name a model: use {NAME_RULE} (--name NAME)")
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelStoreError(f"cannot create the models folder {self.models_dir}: {exc.strerror or exc}; "
                                  "set models_dir to a folder this user can write") from exc
        with self._lock():
            models = self._read()
            if name in models:
                raise ModelStoreError(f"'{name}' is already in the store ({models[name].path}); "
                                      f"give another with --name, or `modelgate models rm {name}` first")
            target = self.models_dir / name
            if target.exists():
                raise ModelStoreError(f"{target} is in the way (a folder the manifest does not list); "
                                      "move it away or give another --name")
            staging = Path(tempfile.mkdtemp(dir=self.models_dir, prefix=".adding-"))
            try:
                if convert:
                    model, digest = _convert(source, staging / f"{name}.{precision}.gguf", name, precision)
                    placed = target / f"{name}.{precision}.gguf"
                elif model.format == "gguf":
                    digest = _place(source, staging / source.name)
                    placed = target / source.name
                else:
                    digest = _place_folder(source, staging)
                    placed = target
                staging.rename(target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            added = replace(model, name=name, path=placed, sha256=digest)
            models[name] = added
            self._write(models)
        return added

    def remove(self, name: str) -> LocalModel:
        """Take ``name`` out of the manifest, then delete its files; the removed model is returned."""
        if not self.manifest.is_file():
            raise self._not_there(name, {})
        with self._lock():
            models = self._read()
            model = models.pop(name, None)
            if model is None:
                raise self._not_there(name, models)
            self._write(models)
            shutil.rmtree(self.models_dir / name, ignore_errors=True)
        return model

    def _not_there(self, name: str, models: dict[str, LocalModel]) -> ModelStoreError:
        known = ", ".join(sorted(models)) or "it is empty"
        return ModelStoreError(f"no model '{name}' in the store at {self.models_dir} ({known}); "
                               "`modelgate models list` shows what is there")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        fd = os.open(self.models_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, models: dict[str, LocalModel]) -> None:
        body = {"version": MANIFEST_VERSION, "models": [m.to_json(self.models_dir) for m in models.values()]}
        fd, temporary = tempfile.mkstemp(dir=self.models_dir, prefix=".manifest-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(body, file, indent=2)
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.manifest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def _convert(source: Path, target: Path, name: str, precision: Precision) -> tuple[LocalModel, str]:
    """The sentence-transformers BERT folder or Llama-family folder ``source`` written as a GGUF file
    at ``target``: its entry (read back from the file) and sha256."""
    try:
        if is_sentence_bert(source):
            convert_sentence_bert(source, target, precision)
        else:
            convert_llama(source, target, precision)
    except ConversionError as error:
        raise ModelStoreError(f"cannot convert {source} to GGUF: {error}") from None
    model = replace(read_model(target, name), converted_from=str(source))
    return model, _sha256(target)


def _place(source: Path, target: Path) -> str:
    """Link ``source`` at ``target``, or copy it where no link can be made; its sha256."""
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        return _copy(source, target)
    return _sha256(target)


def _copy(source: Path, target: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as reader, target.open("xb") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    shutil.copystat(source, target)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    """The files of a model folder, in a fixed order, leaving out hidden ones (``.git``, ``.cache``)."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _place_folder(source: Path, target: Path) -> str:
    """Each file of ``source`` placed under ``target``; a sha256 of the files' names and sha256s."""
    digest = hashlib.sha256()
    for file in _files(source):
        relative = file.relative_to(source)
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        digest.update(f"{relative.as_posix()}\0{_place(file, target / relative)}\n".encode())
    return digest.hexdigest()
