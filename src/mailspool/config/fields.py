"""Typed fields for the settings: a class whose annotations are its fields' types, each
value checked and converted as it is made, with the errors of every field at once.

The settings were a pydantic model, and pydantic cost every command 120 ms at start-up
(its import, then the model's schema): the commands take the same values and give the
same messages from this, which does only what the settings use. The conversions are
pydantic's lax mode for these types: ``int``, ``float``, ``bool``, ``str``, ``Path``,
``list[str]``, a list of another :class:`Fields` class (made from tables), and each of
them ``| None``; a string gives a number (``" 5 "``, ``"5.0"``, ``"1_000"``) or a
boolean (``yes``, ``off``, ``1``...), an integral float an int. Bounds (``ge``, ``gt``,
``le``) and finiteness are checked after conversion. Validators (:func:`validator`) run
before the conversion (``mode="before"``: given the raw value) or after it.
"""

# no ``from __future__ import annotations`` here or in settings.py: a Fields class's
# annotations are its fields' types, read at run time

import inspect
import math
import os
import re
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar, Union, cast, get_args, get_origin

__all__ = ["FieldInfo", "Fields", "ValidationError", "setting", "validator"]

_T = TypeVar("_T")
_F = TypeVar("_F")
#: where an error is: the field's name, then an item's index and a table's key
Loc = tuple[str | int, ...]

#: the default of a field without one (annotated, no value): it must be given
REQUIRED: Any = object()
_INT = re.compile(r"[+-]?\d+(?:_\d+)*(?:\.0+)?", re.ASCII)  # fullmatch, stripped
_I64 = 2.0**63  # a float this large or larger is no int to pydantic
_TRUE = frozenset(("1", "on", "t", "true", "y", "yes"))
_FALSE = frozenset(("0", "off", "f", "false", "n", "no"))


class ValidationError(ValueError):
    """The problems of the values given: (where, message) each, in the fields' order."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))
        self.problems = problems


class _Invalid(Exception):
    """A value that does not fit: ``message``, or the ``problems`` of its items, each
    where it is under the field."""

    def __init__(self, message: str = "", problems: list[tuple[Loc, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [((), message)]

    def under(self, *loc: str | int) -> list[tuple[Loc, str]]:
        return [((*loc, *where), message) for where, message in self.problems]


class FieldInfo:
    """A field: its type (``annotation``), its default or a factory of defaults, its
    bounds (``ge``, ``gt``, ``le``), and whether a float may be infinite or NaN. (A plain
    class: a dataclass compiles its methods at every start, 1 ms.)"""

    __slots__ = ("allow_inf_nan", "annotation", "default", "default_factory", "ge", "gt", "le")

    def __init__(
        self,
        annotation: Any = None,
        default: Any = None,
        default_factory: Callable[[], Any] | None = None,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        allow_inf_nan: bool = True,
    ) -> None:
        self.annotation = annotation
        self.default = default
        self.default_factory = default_factory
        self.ge, self.gt, self.le = ge, gt, le
        self.allow_inf_nan = allow_inf_nan

    def make_default(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default


def setting(
    default: _T | None = None,
    *,
    factory: Callable[[], _T] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    allow_inf_nan: bool = True,
) -> _T:
    """A field's default (or ``factory`` of defaults) and bounds, as a class attribute:
    ``concurrency: int = setting(8, ge=1, le=1000)``."""
    info = FieldInfo(None, default, factory, ge, gt, le, allow_inf_nan)
    return cast(_T, info)  # typed as the value, for the attribute's annotation


def validator(*fields: str, mode: str = "after") -> Callable[[_F], _F]:
    """Mark a static method of a Fields class as a validator of ``fields``: given the
    value (raw with ``mode="before"``, else converted), it returns the value to keep or
    raises ValueError, whose text is the field's error."""

    def mark(fn: _F) -> _F:
        target = getattr(fn, "__func__", fn)  # a staticmethod: its function
        setattr(target, "__validates__", (fields, mode))  # noqa: B010
        return fn

    return mark


_Check = Callable[[Any], Any]


class Fields:
    """A class of typed fields: subclass it with annotated attributes (plain defaults, or
    :func:`setting`), then ``Cls(**values)`` checks and converts every value, or raises
    :class:`ValidationError` naming each bad one. Unknown names are errors too."""

    model_fields: ClassVar[dict[str, FieldInfo]] = {}
    _before: ClassVar[dict[str, list[_Check]]] = {}
    _after: ClassVar[dict[str, list[_Check]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, FieldInfo] = {}
        # a string annotation (``from __future__ import annotations``) is evaluated: one
        # eval each, which settings.py spares itself by not using that import
        for name, annotation in inspect.get_annotations(cls, eval_str=True).items():
            origin: Any = get_origin(annotation)
            if name.startswith("_") or origin is ClassVar:
                continue
            value = cls.__dict__.get(name, REQUIRED)
            info = value if isinstance(value, FieldInfo) else FieldInfo(default=value)
            fields[name] = FieldInfo(annotation, *_rest(info))
            if name in cls.__dict__:
                delattr(cls, name)  # the instance holds the value
        cls.model_fields = fields
        cls._before, cls._after = {}, {}
        # the class's own validators and those of its bases (Settings: config/checks.py)
        for attr in [a for klass in reversed(cls.__mro__) for a in vars(klass).values()]:
            marked = getattr(getattr(attr, "__func__", attr), "__validates__", None)
            if marked is None:
                continue
            names, mode = marked
            table = cls._before if mode == "before" else cls._after
            for name in names:
                if name not in fields:
                    raise TypeError(f"{cls.__name__}: a validator of no field {name!r}")
                table.setdefault(name, []).append(getattr(attr, "__func__", attr))

    def __init__(self, **values: Any) -> None:
        problems: list[tuple[Loc, str]] = []
        fields = type(self).model_fields
        for name, info in fields.items():
            raw = values[name] if name in values else info.make_default()
            if raw is REQUIRED:
                problems.append(((name,), "Field required"))
                continue
            try:
                self.__dict__[name] = self._check(name, info, raw)
            except _Invalid as exc:
                problems += exc.under(name)
        extra = [name for name in values if name not in fields]
        problems += [((name,), "Extra inputs are not permitted") for name in extra]
        if problems:
            raise ValidationError(problems)
        self.__dict__["model_fields_set"] = set(values)

    @classmethod
    def _check(cls, name: str, info: FieldInfo, value: Any) -> Any:
        try:
            for check in cls._before.get(name, ()):
                value = check(value)
            value = _convert(info.annotation, value, info)
            for check in cls._after.get(name, ()):
                value = check(value)
        except ValueError as exc:
            raise _Invalid(f"Value error, {exc}") from None
        return value

    #: the names of the fields given a value when made (from any source), not defaults
    model_fields_set: set[str]

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Self:
        """A copy, with the values of ``update`` as they are (not checked)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(update or {})
        copy.__dict__["model_fields_set"] = self.model_fields_set | set(update or ())
        return copy

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        for name in type(self).model_fields:
            yield name, self.__dict__[name]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return dict(self) == dict(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, as the pydantic model was

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self)})"


def _rest(info: FieldInfo) -> tuple[Any, ...]:
    return (info.default, info.default_factory, info.ge, info.gt, info.le, info.allow_inf_nan)


def _convert(annotation: Any, value: Any, info: FieldInfo) -> Any:
    """``value`` as the type ``annotation`` says, within ``info``'s bounds."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (annotation,) = (a for a in args if a is not type(None))
        origin, args = get_origin(annotation), get_args(annotation)
    if origin is list:
        return _list(args[0], value)
    if isinstance(annotation, type) and issubclass(annotation, Fields):
        return _table(annotation, value)
    convert = _CONVERT[annotation]
    return _bounded(convert(value, info), info)


def _list(item: Any, value: Any) -> list[Any]:
    if not isinstance(value, list | tuple | set | frozenset):
        raise _Invalid("Input should be a valid list")
    out, problems = [], []
    for i, v in enumerate(value):
        try:
            out.append(_convert(item, v, FieldInfo()))
        except _Invalid as exc:
            problems += exc.under(i)
    if problems:
        raise _Invalid(problems=problems)
    return out


def _table(cls: type[Fields], value: Any) -> Fields:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise _Invalid(f"Input should be a valid dictionary or instance of {cls.__name__}")
    try:
        return cls(**value)
    except ValidationError as exc:
        raise _Invalid(problems=exc.problems) from None


def _int(value: Any, info: FieldInfo) -> int:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, int):  # a bool too, as pydantic takes it
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid("Input should be a finite number")
        if not value.is_integer():
            raise _Invalid("Input should be a valid integer, got a number with a fractional part")
        if not -_I64 < value < _I64:  # pydantic's words, string or not
            raise _Invalid("Unable to parse input string as an integer, exceeded maximum size")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if _INT.fullmatch(text):
            return int(text.split(".")[0])
        raise _Invalid("Input should be a valid integer, unable to parse string as an integer")
    raise _Invalid("Input should be a valid integer")


def _float(value: Any, info: FieldInfo) -> float:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    number: float
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise _Invalid("Input should be a valid number") from None
    elif isinstance(value, str):
        text = value.strip()
        try:
            if not text.isascii():
                raise ValueError(text)
            number = float(text)
        except ValueError:
            raise _Invalid(
                "Input should be a valid number, unable to parse string as a number"
            ) from None
    else:
        raise _Invalid("Input should be a valid number")
    if not info.allow_inf_nan and not math.isfinite(number):
        raise _Invalid("Input should be a finite number")
    return number


def _bool(value: Any, info: FieldInfo) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value.lower() in _TRUE:
        return True
    if isinstance(value, str) and value.lower() in _FALSE:
        return False
    if isinstance(value, str) or (isinstance(value, int) and -_I64 <= value < _I64):
        # (a float other than 0 and 1, or an int past 64 bits, is no boolean at all)
        raise _Invalid("Input should be a valid boolean, unable to interpret input")
    raise _Invalid("Input should be a valid boolean")


def _str(value: Any, info: FieldInfo) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            pass
    raise _Invalid("Input should be a valid string")


def _path(value: Any, info: FieldInfo) -> Path:
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise _Invalid("Input is not a valid path for <class 'pathlib.Path'>")


_CONVERT: dict[Any, Callable[[Any, FieldInfo], Any]] = {
    int: _int,
    float: _float,
    bool: _bool,
    str: _str,
    Path: _path,
}


def _bounded(value: Any, info: FieldInfo) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if info.gt is not None and not value > info.gt:
        raise _Invalid(f"Input should be greater than {_number(info.gt)}")
    if info.ge is not None and not value >= info.ge:
        raise _Invalid(f"Input should be greater than or equal to {_number(info.ge)}")
    if info.le is not None and not value <= info.le:
        raise _Invalid(f"Input should be less than or equal to {_number(info.le)}")
    return value


def _number(bound: float) -> str:
    """A bound as pydantic's messages show it: ``1.0`` as ``1``."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)
