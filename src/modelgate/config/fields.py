"""Reads YAML mappings into settings dataclasses, by their fields and type hints.

A dataclass field is a config key; its type says what the key takes: ``str``, ``int``, ``float``,
``bool``, ``X | None``, ``Literal[...]``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``, ``Any``
or another dataclass (a nested mapping). ``Annotated[type, Key(...)]`` adds what a wrong value is
told it should be, a check of the value, the text said when a required key is missing, or a reader
of its own; a section whose dataclass belongs to another package (``ProviderSettings``) gives its
``Key`` objects to ``Shape`` instead.

A key that is absent or null takes the field's default; a required field that is absent, null or
an empty string is reported missing. Every problem is collected with its key path, so that one
reading reports them all.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Final,
    Generic,
    Literal,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

if TYPE_CHECKING:
    from modelgate.catalog import Catalog

T = TypeVar("T")

Check = Callable[[Any], str | None]
"""Given a value of the right type, the problem with it (said after its key path), or None."""

ReadValue = Callable[["Reader", Any, str, Mapping[str, Any]], Any]
"""Reads one key's raw value on its own: (reader, value, path, the keys of its mapping read before it).
Returns the value, or ``INVALID`` once the problem is reported."""


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final[Any] = _Invalid()
"""What a reader returns for a value it reported a problem with."""


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    """How a config key is read beyond its type.

    ``expected``: what the value should be, said when its type is wrong ("seconds as a number").
    ``check``: a problem with a value of the right type (the value is kept, the problem reported).
    ``doc``: what the key holds, said when a required key is missing ("is required: {doc}").
    ``choices``: the values allowed; any other is reported with them and dropped.
    ``read``: reads the raw value instead of its type (a section with references to others).
    ``shape``: the shape of a nested dataclass whose fields have keys given from outside.
    ``inline``: a nested dataclass whose keys sit in the enclosing mapping itself.
    """

    expected: str | None = None
    check: Check | None = None
    doc: str = ""
    choices: Collection[Any] | None = None
    read: ReadValue | None = None
    shape: Shape[Any] | None = None
    inline: bool = False


class Reader:
    """One document being read: its inputs and the problems found so far, each with its key path.

    ``folder`` is the config file's folder, which relative paths in it are taken from (None: the
    current directory).
    """

    def __init__(self, env: Mapping[str, str], catalog: Catalog, folder: Path | None = None) -> None:
        self.env = env
        self.catalog = catalog
        self.folder = folder
        self.problems: list[str] = []

    def path(self, given: str) -> Path:
        """A path the config gives, made absolute from the config file's folder."""
        return Path(os.path.abspath(os.path.join(self.folder or Path.cwd(), Path(given).expanduser())))

    def fail(self, path: str, problem: str) -> None:
        self.problems.append(f"{path}: {problem}")

    def expect(self, value: Any, kind: type | tuple[type, ...], path: str, what: str) -> bool:
        """Whether ``value`` is a ``kind``; if not, the problem is reported (a YAML ``true`` is no number)."""
        if isinstance(value, kind) and (not isinstance(value, bool) or _admits_bool(kind)):
            return True
        self.fail(path, f"expected {what}, got {shown(value)}")
        return False


def shown(value: Any) -> str:
    """A wrong value as problems name it: its type and its text (booleans by their text alone)."""
    return repr(value) if isinstance(value, bool) else f"{type(value).__name__} {value!r}"


def join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _admits_bool(kind: type | tuple[type, ...]) -> bool:
    return bool in kind if isinstance(kind, tuple) else kind is bool


# Checks, declared next to the field they check: Annotated[float, Key("seconds", positive("..."))].

def positive(problem: str) -> Check:
    return lambda value: problem if value <= 0 else None


def at_least(least: float, problem: str) -> Check:
    return lambda value: problem if value < least else None


def nonempty(problem: str) -> Check:
    return lambda value: None if value else problem


Convert = Callable[[Reader, Any, str], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _Slot:
    name: str
    required: bool
    doc: str
    convert: Convert
    read: ReadValue | None


class Shape(Generic[T]):
    """The config keys of a dataclass, compiled once from its fields: what each takes and how it is checked.

    ``keys`` gives the ``Key`` of fields whose dataclass cannot carry them; ``skip`` names fields that
    are no config key (a name taken from the mapping's key); ``by_hand`` names keys the section reads
    itself, allowed here but left out of ``values``.
    """

    def __init__(self, cls: type[T], *, keys: Mapping[str, Key] | None = None,
                 skip: Collection[str] = (), by_hand: Collection[str] = ()) -> None:
        self.cls = cls
        hints = get_type_hints(cls, include_extras=True)
        self._slots: list[_Slot] = []
        self._inline: list[tuple[str, Shape[Any]]] = []
        self._inline_required: list[str] = []
        names: set[str] = set(by_hand)
        for field in dataclasses.fields(cast(Any, cls)):
            if not field.init or field.name in skip or field.name in by_hand:
                continue
            hint = hints[field.name]
            given = (keys or {}).get(field.name) or _key_of(hint)
            key = given or Key()
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            if key.inline:
                nested = key.shape or shape_of(_bare(hint))
                self._inline.append((field.name, nested))
                if required:
                    self._inline_required.append(field.name)
                names.update(nested.keys)
                continue
            self._slots.append(_Slot(field.name, required, key.doc, _converter(hint, given), key.read))
            names.add(field.name)
        self.keys: frozenset[str] = frozenset(names)
        self._by_name = {slot.name: slot for slot in self._slots}
        self._required = [slot for slot in self._slots if slot.required]
        self._owner = {key: name for name, nested in self._inline for key in nested.keys}
        # A key with a reader of its own may refer to those before it: read them in the fields' order.
        self._in_order = any(slot.read for slot in self._slots)
        listed = [f"{slot.name}:" for slot in self._slots] + [f"{n}:" for n in by_hand]
        self.expected = "a mapping" if not listed else "a mapping with " + _enumerate(listed)

    def read(self, reader: Reader, data: Any, path: str, *, what: str | None = None) -> T | None:
        """The dataclass from ``data``; None when a problem leaves it without a required value."""
        values = self.values(reader, data, path, what=what)
        return None if values is None else self.build(reader, data, values, path)

    def values(self, reader: Reader, data: Any, path: str, *, what: str | None = None,
               strict: bool = True, also: Collection[str] = ()) -> dict[str, Any] | None:
        """The valid values ``data`` gives, by field; None when ``data`` is no mapping.

        ``strict`` reports keys that are none of this shape's, nor in ``also``.
        """
        if not isinstance(data, dict):
            reader.fail(path, f"expected {what or self.expected}, got {shown(data)}")
            return None
        values: dict[str, Any] = {}
        inline: dict[str, dict[str, Any]] = {}
        for key, raw in data.items():
            slot = self._by_name.get(key)
            if slot is not None:
                if not self._in_order:
                    self._read(reader, slot, raw, path, values)
            elif key in self._owner:
                inline.setdefault(self._owner[key], {})[key] = raw
            elif strict and key not in self.keys and key not in also:
                allowed = ", ".join(sorted(self.keys.union(also)))
                reader.fail(join(path, key), f"unknown key; allowed here: {allowed}")
        if self._in_order:
            for slot in self._slots:
                if slot.name in data:
                    self._read(reader, slot, data[slot.name], path, values)
        for name, nested in self._inline:
            given = inline.get(name)
            if given is None:
                if not nested._required:  # none of its keys: the field's default
                    continue
                given = {}
            inner = nested.values(reader, given, path, strict=False)
            made = None if inner is None else nested.build(reader, given, inner, path)
            if made is not None:
                values[name] = made
        return values

    @staticmethod
    def _read(reader: Reader, slot: _Slot, raw: Any, path: str, values: dict[str, Any]) -> None:
        if raw is None or (slot.required and raw == ""):
            return
        where = join(path, slot.name)
        value = slot.read(reader, raw, where, values) if slot.read else slot.convert(reader, raw, where)
        if value is not INVALID:
            values[slot.name] = value

    def build(self, reader: Reader, data: Mapping[str, Any], values: dict[str, Any], path: str) -> T | None:
        """The dataclass from ``values``, or None after reporting each required key that ``data`` lacks."""
        complete = True
        for slot in self._required:
            if slot.name not in values:
                complete = False
                if data.get(slot.name) is None or data.get(slot.name) == "":
                    reader.fail(join(path, slot.name), f"is required: {slot.doc}" if slot.doc else "is required")
        # A required inline section that could not be built has had its problems reported.
        complete = complete and all(name in values for name in self._inline_required)
        return self.cls(**values) if complete else None


_SHAPES: dict[type, Shape[Any]] = {}


def shape_of(cls: type[T]) -> Shape[T]:
    """The shape of a dataclass that carries its keys itself; compiled once."""
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = _SHAPES[cls] = Shape(cls)
    return shape


def _enumerate(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _key_of(hint: Any) -> Key | None:
    """The ``Key`` a type is annotated with (``Annotated[X, Key(...)]``, or that ``| None``)."""
    if get_origin(hint) is Annotated:
        return next((m for m in hint.__metadata__ if isinstance(m, Key)), None)
    return _key_of(_without_none(hint)) if _optional(hint) else None


def _bare(hint: Any) -> Any:
    """The type without its annotations and without ``| None``."""
    if get_origin(hint) is Annotated:
        return _bare(get_args(hint)[0])
    if _optional(hint):
        return _bare(_without_none(hint))
    return hint


def _optional(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)


def _without_none(hint: Any) -> Any:
    rest = [arg for arg in get_args(hint) if arg is not type(None)]
    if len(rest) != 1:
        raise TypeError(f"config type {hint!r}: only X | None unions can be read")
    return rest[0]


def _converter(hint: Any, key: Key | None = None) -> Convert:
    """How a raw value becomes a value of ``hint``: checked, converted, or reported and INVALID."""
    if get_origin(hint) is Annotated:
        return _converter(get_args(hint)[0], key or _key_of(hint))
    if _optional(hint):
        inner = _converter(_without_none(hint), key)
        return lambda reader, value, path: None if value is None else inner(reader, value, path)
    key = key or Key()
    convert = _base_converter(hint, key)
    check = key.check
    if check is None:
        return convert

    def checked(reader: Reader, value: Any, path: str) -> Any:
        value = convert(reader, value, path)
        if value is not INVALID:
            problem = check(value)
            if problem:
                reader.fail(path, problem)
        return value

    return checked


_PLURALS = {str: "strings", int: "whole numbers", float: "numbers", bool: "true or false values"}


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if hint is str:
        return "a string"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if origin is Literal:
        return f"one of {', '.join(map(str, get_args(hint)))}"
    if origin in (list, tuple):
        item = _PLURALS.get(_bare(get_args(hint)[0]))
        return f"a list of {item}" if item else "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return shape_of(hint).expected
    return "any value"


def _base_converter(hint: Any, key: Key) -> Convert:
    origin = get_origin(hint)
    choices = tuple(key.choices) if key.choices is not None else get_args(hint) if origin is Literal else None
    if choices is not None:
        listed = ", ".join(map(str, choices))

        def one_of(reader: Reader, value: Any, path: str) -> Any:
            if value in choices:
                return value
            reader.fail(path, f"must be one of {listed}, got {value!r}")
            return INVALID

        return one_of
    what = key.expected or (key.shape.expected if key.shape else _describe(hint))
    if key.shape is not None or (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        shape = key.shape or shape_of(hint)

        def nested(reader: Reader, value: Any, path: str) -> Any:
            made = shape.read(reader, value, path, what=what)
            return INVALID if made is None else made

        return nested
    if hint is Any:
        return lambda reader, value, path: value
    if hint is float:
        def number(reader: Reader, value: Any, path: str) -> Any:
            return float(value) if reader.expect(value, (int, float), path, what) else INVALID

        return number
    if hint in (str, int, bool):
        def plain(reader: Reader, value: Any, path: str) -> Any:
            return value if reader.expect(value, hint, path, what) else INVALID

        return plain
    if origin in (list, tuple):
        args = get_args(hint)
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            raise TypeError(f"config type {hint!r}: only tuple[X, ...] can be read")
        item = _converter(args[0])
        make = tuple if origin is tuple else list

        def sequence(reader: Reader, value: Any, path: str) -> Any:
            if not reader.expect(value, list, path, what):
                return INVALID
            items = [item(reader, v, f"{path}[{i}]") for i, v in enumerate(value)]
            return INVALID if any(v is INVALID for v in items) else make(items)

        return sequence
    if origin is dict:
        if get_args(hint)[0] is not str:
            raise TypeError(f"config type {hint!r}: only dict[str, X] can be read")
        entry = _converter(get_args(hint)[1])

        def mapping(reader: Reader, value: Any, path: str) -> Any:
            if not reader.expect(value, dict, path, what):
                return INVALID
            entries = {str(k): entry(reader, v, f"{path}.{k}") for k, v in value.items()}
            return INVALID if any(v is INVALID for v in entries.values()) else entries

        return mapping
    raise TypeError(f"config type {hint!r} cannot be read")
