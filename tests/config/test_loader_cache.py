"""A large config's parsed document is cached by the hash of its text: read back while the text
is the same, parsed again once it changes, and never in the way when it cannot be used."""

from __future__ import annotations

import marshal
from pathlib import Path

from modelgate.config import load_settings, parse_settings
from modelgate.config.loader import CACHE_FROM_BYTES


def write_config(path: Path, count: int, model: str = "gpt-4o") -> None:
    lines = ["providers:", "  up: {type: openai, base_url: '${UPSTREAM}'}", "deployments:"]
    lines += [f"  - {{name: d{i:05d}, provider: up, model: {model}, timeout: 30}}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size >= CACHE_FROM_BYTES


def test_the_cache_is_read_while_the_text_is_the_same_and_parsed_again_when_it_changes(tmp_path: Path) -> None:
    config, cache = tmp_path / "modelgate.yaml", tmp_path / "cache"
    env = {"UPSTREAM": "http://127.0.0.1:9/v1", "MODELGATE_CACHE_DIR": str(cache)}
    write_config(config, 6000)
    first = load_settings(config, env)
    [kept] = cache.iterdir()
    assert len(first.deployments) == 6000 and first.providers["up"].base_url == "http://127.0.0.1:9/v1"
    # What the cache holds is what is read: a cache of the same text telling another story is believed.
    digest = kept.read_bytes()[:32]
    document = marshal.loads(kept.read_bytes()[32:])
    document["deployments"] = document["deployments"][:3]
    kept.write_bytes(digest + marshal.dumps(document))
    assert list(load_settings(config, env).deployments) == ["d00000", "d00001", "d00002"]
    # Another text: parsed, and cached in the place of the old one.
    write_config(config, 6000, model="gpt-4o-mini")
    changed = load_settings(config, env)
    assert len(changed.deployments) == 6000 and changed.deployments["d00042"].targets[0].model == "gpt-4o-mini"
    assert list(cache.iterdir()) == [kept] and kept.read_bytes()[:32] != digest


def test_a_cache_that_cannot_be_used_is_passed_over(tmp_path: Path) -> None:
    config = tmp_path / "modelgate.yaml"
    write_config(config, 6000)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    assert len(load_settings(config, {"UPSTREAM": "http://x", "MODELGATE_CACHE_DIR": str(blocked)}).deployments) == 6000
    cache = tmp_path / "cache"
    env = {"UPSTREAM": "http://x", "MODELGATE_CACHE_DIR": str(cache)}
    load_settings(config, env)
    [kept] = cache.iterdir()
    kept.write_bytes(kept.read_bytes()[:40])  # cut short
    assert len(load_settings(config, env).deployments) == 6000
    # Small files are parsed every time, nothing cached.
    small = tmp_path / "small.yaml"
    small.write_text("providers: {up: {type: openai, base_url: 'http://x'}}\n"
                     "deployments: [{name: d, provider: up, model: m}]\n")
    load_settings(small, {"MODELGATE_CACHE_DIR": str(tmp_path / "other")})
    assert not (tmp_path / "other").exists()


def test_the_cache_folder_is_named_by_the_environment_and_kept_on_the_settings() -> None:
    body: dict[str, object] = {"providers": {}, "deployments": []}
    assert parse_settings(body, {"MODELGATE_CACHE_DIR": "/srv/cache", "HOME": "/home/a"}).cache_dir == "/srv/cache"
    assert parse_settings(body, {"XDG_CACHE_HOME": "/x", "HOME": "/home/a"}).cache_dir == "/x/modelgate"
    assert parse_settings(body, {"HOME": "/home/a"}).cache_dir == "/home/a/.cache/modelgate"
    assert parse_settings(body, {}).cache_dir is None
