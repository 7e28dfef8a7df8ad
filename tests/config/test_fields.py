"""Config sections read from their dataclasses: keys, types and checks come from the fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal

import pytest

from modelgate.catalog import Catalog
from modelgate.config.fields import INVALID, Key, Reader, Shape, positive, shape_of
from modelgate.config.providers import PROVIDER
from modelgate.config.settings import Settings
from modelgate.providers.settings import ProviderSettings


def _share(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be between 0 and 1, got {value}"


@dataclass(slots=True, kw_only=True)
class Exporter:
    url: Annotated[str, Key(doc="where spans go, e.g. http://collector:4318")]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Telemetry:
    enabled: bool = False
    sample: Annotated[float, Key("a share between 0 and 1", _share)] = 1.0
    protocol: Literal["grpc", "http"] = "http"
    batch: Annotated[int | None, Key(check=positive("must be a positive number of spans"))] = None
    tags: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    exporter: Exporter | None = None


def read(shape: Shape[Any], data: Any) -> tuple[Any, list[str]]:
    reader = Reader({}, Catalog({}))
    return shape.read(reader, data, "telemetry"), reader.problems


def test_values_are_read_by_their_field_types() -> None:
    telemetry, problems = read(shape_of(Telemetry), {
        "enabled": True, "sample": 1, "protocol": "grpc", "batch": 512, "tags": ["a", "b"],
        "weights": {"x": 2}, "extra": {"k": [1]}, "exporter": {"url": "http://c:4318", "headers": {"a": "b"}}})
    assert problems == []
    assert telemetry == Telemetry(enabled=True, sample=1.0, protocol="grpc", batch=512, tags=["a", "b"],
                                  weights={"x": 2.0}, extra={"k": [1]},
                                  exporter=Exporter(url="http://c:4318", headers={"a": "b"}))
    assert isinstance(telemetry.sample, float)
    # Absent or null keys take their defaults.
    assert read(shape_of(Telemetry), {"sample": None}) == (Telemetry(), [])


def test_every_problem_is_named_with_its_key_path() -> None:
    telemetry, problems = read(shape_of(Telemetry), {
        "enabled": "yes", "sample": 2, "protocol": "udp", "batch": 0, "tags": ["a", 3],
        "weights": {"x": True}, "extra": [], "exporter": {"headers": {}}, "sampel": 1})
    assert problems == [
        "telemetry.enabled: expected true or false, got str 'yes'",
        "telemetry.sample: must be between 0 and 1, got 2.0",
        "telemetry.protocol: must be one of grpc, http, got 'udp'",
        "telemetry.batch: must be a positive number of spans",
        "telemetry.tags[1]: expected a string, got int 3",
        "telemetry.weights.x: expected a number, got True",
        "telemetry.extra: expected a mapping, got list []",
        "telemetry.exporter.url: is required: where spans go, e.g. http://collector:4318",
        "telemetry.sampel: unknown key; allowed here: batch, enabled, exporter, extra, protocol, sample, tags, "
        "weights",
    ]
    assert telemetry is not None  # a section whose required keys are there is still built


def test_a_mapping_is_expected_where_a_section_goes() -> None:
    assert read(shape_of(Telemetry), [1]) == (None, ["telemetry: expected a mapping with enabled:, sample:, "
                                                     "protocol:, batch:, tags:, weights:, extra: and exporter:, "
                                                     "got list [1]"])
    assert read(shape_of(Exporter), {"url": ""})[1] == [
        "telemetry.url: is required: where spans go, e.g. http://collector:4318"]


@dataclass(slots=True, kw_only=True)
class Limits:
    rpm: int | None = None


@dataclass(slots=True, kw_only=True)
class Named:
    name: str
    size: int = 1
    limits: Annotated[Limits, Key(inline=True)] = field(default_factory=Limits)


def test_keys_given_from_outside_skipped_fields_and_inline_sections() -> None:
    shape = Shape(Named, skip=("name",), keys={"size": Key("a size in bytes", positive("must be positive"))})
    assert shape.keys == {"size", "rpm"}
    reader = Reader({}, Catalog({}))
    values = shape.values(reader, {"size": "big", "rpm": 5, "name": "n"}, "x")
    assert values == {"limits": Limits(rpm=5)}
    assert reader.problems == ["x.size: expected a size in bytes, got str 'big'",
                               "x.name: unknown key; allowed here: rpm, size"]


@dataclass(slots=True, kw_only=True)
class Wrapped:
    exporter: Annotated[Exporter, Key(inline=True)]


def test_a_required_inline_section_reports_its_own_required_keys() -> None:
    assert read(shape_of(Wrapped), {"url": "http://c:4318"}) == (Wrapped(exporter=Exporter(url="http://c:4318")), [])
    assert read(shape_of(Wrapped), {}) == (None, ["telemetry.url: is required: where spans go, e.g. "
                                                  "http://collector:4318"])


def _double_of_earlier(reader: Reader, value: Any, path: str, earlier: Mapping[str, Any]) -> Any:
    if value not in earlier.get("names", ()):
        reader.fail(path, f"{value!r} is none of the names above")
        return INVALID
    return value * 2


@dataclass(slots=True, kw_only=True)
class Refers:
    names: list[str] = field(default_factory=list)
    main: Annotated[str | None, Key(read=_double_of_earlier)] = None


def test_a_key_with_its_own_reader_sees_the_keys_before_it_in_field_order() -> None:
    # The YAML's order is not the fields' order.
    assert read(shape_of(Refers), {"main": "a", "names": ["a"]}) == (Refers(main="aa", names=["a"]), [])
    assert read(shape_of(Refers), {"main": "b", "names": ["a"]})[1] == [
        "telemetry.main: 'b' is none of the names above"]


def test_types_that_cannot_be_read_are_refused_when_the_shape_is_made() -> None:
    @dataclass
    class Odd:
        either: int | str = 0

    with pytest.raises(TypeError, match="cannot be read"):
        Shape(Odd)


def test_every_provider_setting_is_a_config_key() -> None:
    assert PROVIDER.keys == {f.name for f in fields(ProviderSettings)} - {"name"}
    # Fields that __init__ does not take are set by the loader, not read: the config file's path,
    # and the cache folder named by the environment.
    assert shape_of(Settings).keys == {f.name for f in fields(Settings) if f.init}
    assert [f.name for f in fields(Settings) if not f.init] == ["config_file", "cache_dir"]
