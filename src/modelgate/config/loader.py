"""Reads the YAML config file into ``Settings``, checking every key before the server starts.

Every problem found is reported at once, each naming its key and the fix. ``${VAR}`` references
are expanded from the environment given (env.py).

YAML is parsed by libyaml (PyYAML's C loader; the pure-Python one where libyaml is missing).
Even that builds every node in Python: about 0.35 ms per deployment, 3.6 s for 10,000. So a large
file's parsed document is also kept in a cache (``MODELGATE_CACHE_DIR``, else
``$XDG_CACHE_HOME/modelgate`` or ``~/.cache/modelgate``), one file per config path holding the
hash of the text it came from: a restart with the same text reads it back in milliseconds, any
change to the text parses it again. The cache is only ever a shortcut: a cache that cannot be
read or written is passed over.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import marshal
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from modelgate.catalog import Catalog
from modelgate.config.env import expand_env, protect_references
from modelgate.config.fields import Reader, shape_of
from modelgate.config.providers import read_providers
from modelgate.config.settings import Settings
from modelgate.providers.settings import ProviderSettings

__all__ = ["ConfigError", "load_providers", "load_settings", "parse_settings"]


class ConfigError(Exception):
    """The config file cannot be used; the message lists every problem and its fix."""


def load_settings(path: str | Path, env: Mapping[str, str], catalog: Catalog | None = None) -> Settings:
    # What is built here lives as long as the process: collecting meanwhile only walks it again
    # and again (a third of the time at 10,000 deployments).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load_settings(Path(path), env, catalog)
    finally:
        if collecting:
            gc.enable()


def _load_settings(path: Path, env: Mapping[str, str], catalog: Catalog | None) -> Settings:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    protected, references = protect_references(text)
    cache = _cache_file(path, env) if len(protected) >= CACHE_FROM_BYTES else None
    digest = hashlib.blake2b(f"{_LOADER_ID}\n{protected}".encode(), digest_size=32).digest()
    data = _cached(cache, digest) if cache is not None else _MISSING
    if data is _MISSING:
        try:
            data = yaml.load(protected, Loader=_LOADER)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if cache is not None:
            _keep(cache, digest, data)
    settings = parse_settings(data or {}, env, catalog, source=str(path), references=references,
                              folder=path.absolute().parent)
    settings.config_file = str(path.absolute())
    return settings


def load_providers(path: str | Path, env: Mapping[str, str]) -> dict[str, ProviderSettings]:
    """The ``providers:`` section alone, checked as ``load_settings`` checks it.

    For commands that manage what the rest of the file refers to (the model store): a deployment
    naming a model not yet added must not keep that model from being added.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    protected, references = protect_references(text)
    try:
        data = yaml.load(protected, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with providers: and deployments:")
    reader = Reader(env, Catalog({}), path.absolute().parent)
    section = expand_env((data or {}).get("providers"), env, "providers", reader.fail, references)
    providers = read_providers(reader, section, "providers", {})
    if reader.problems:
        raise ConfigError(f"{path} has {len(reader.problems)} problem(s):\n  " + "\n  ".join(reader.problems))
    return dict(providers)


_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LOADER_ID = f"modelgate config cache 1, PyYAML {yaml.__version__}, {_LOADER.__name__}"
CACHE_FROM_BYTES = 256 * 1024  # smaller files parse in well under 0.1 s
_MISSING: Any = object()


def cache_folder(env: Mapping[str, str]) -> Path | None:
    """``MODELGATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/modelgate`` or ``~/.cache/modelgate``."""
    folder = env.get("MODELGATE_CACHE_DIR")
    if folder:
        return Path(folder)
    base = env.get("XDG_CACHE_HOME") or (str(Path(env["HOME"]) / ".cache") if env.get("HOME") else None)
    return Path(base) / "modelgate" if base else None


def _cache_file(path: Path, env: Mapping[str, str]) -> Path | None:
    folder = cache_folder(env)
    if folder is None:
        return None
    name = hashlib.blake2b(str(path.resolve()).encode(), digest_size=16).hexdigest()
    return folder / f"config-{name}.marshal"


def _cached(cache: Path, digest: bytes) -> Any:
    """The document cached for the text of ``digest``, or ``_MISSING``."""
    try:
        body = cache.read_bytes()
        if body[:len(digest)] != digest:
            return _MISSING
        return marshal.loads(memoryview(body)[len(digest):])
    except (OSError, EOFError, ValueError, TypeError):
        return _MISSING


def _keep(cache: Path, digest: bytes, data: Any) -> None:
    """Write the cache file whole or not at all (a new file renamed over the old one)."""
    try:
        body = marshal.dumps(data)  # ValueError for what marshal cannot hold (YAML timestamps)
        cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=cache.parent, prefix=".config-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(digest + body)
            os.replace(temporary, cache)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except (OSError, ValueError):
        return


def parse_settings(
    data: Any, env: Mapping[str, str], catalog: Catalog | None = None, source: str = "config",
    references: list[str] | None = None, folder: Path | None = None,
) -> Settings:
    """Settings from a parsed document; ``references`` are those ``protect_references`` swapped out;
    relative paths in it are taken from ``folder`` (the config file's; None: the current directory)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with providers: and deployments:")
    reader = Reader(env, catalog or Catalog.builtin(), folder)
    data = expand_env(data, env, "", reader.fail, references)
    settings = shape_of(Settings).read(reader, data, "")
    if reader.problems or settings is None:
        raise ConfigError(f"{source} has {len(reader.problems)} problem(s):\n  " + "\n  ".join(reader.problems))
    folder_of_cache = cache_folder(env)
    settings.cache_dir = str(folder_of_cache) if folder_of_cache else None
    return settings
