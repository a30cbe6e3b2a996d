"""The settings' fields take what the pydantic model they replace took, and refuse the
rest with the same messages: each value tried on both, pydantic (an API dependency) the
reference."""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from mailspool.config.fields import Fields, ValidationError, setting

VALUES: list[Any] = [
    None, "", " ", "0", "1", "-1", "5", " 5 ", "+5", "007", "5.0", "5.00", "-0.0", "5.", "5.5",
    "1_000", "1_000.0", "1__0", "1e3", "0x10", "٣", "inf", "-inf", "nan", "x", "true", "TRUE",
    "off", "yes", "T", "n", "true ", b"5", b"yes", 0, 1, 2, -1, 5, 1000, 1001, 10**30, 0.0, 0.5,
    1.0, 2.5, 9.3e18, 1e300, math.inf, math.nan, True, False, [], ["a"], [1, "b", None],
    ("a", "b"), {"a"}, {"a": 1}, datetime.date(2020, 1, 1), Path("p"),
]  # fmt: skip


class Ours(Fields):
    count: int = setting(8, ge=1, le=1000)
    some: int | None = setting(None, ge=0, le=64)
    factor: float = setting(2.0, ge=1.0, allow_inf_nan=False)
    seconds: float = setting(60.0, gt=0)
    flag: bool = False
    text: str = "x"
    maybe: str | None = None
    path: Path | None = None
    names: list[str] = setting(factory=list)


class Theirs(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    count: int = Field(default=8, ge=1, le=1000)
    some: int | None = Field(default=None, ge=0, le=64)
    factor: float = Field(default=2.0, ge=1.0, allow_inf_nan=False)
    seconds: float = Field(default=60.0, gt=0)
    flag: bool = False
    text: str = "x"
    maybe: str | None = None
    path: Path | None = None
    names: list[str] = Field(default_factory=list)


def outcome(cls: Any, values: dict[str, Any]) -> Any:
    try:
        made = cls(**values)
    except ValidationError as exc:
        return [(loc, message) for loc, message in exc.problems]
    except PydanticError as exc:
        return [(e["loc"], e["msg"]) for e in exc.errors()]
    return repr({name: getattr(made, name) for name in Ours.model_fields})


@pytest.mark.parametrize("name", list(Ours.model_fields))
def test_each_value_is_taken_or_refused_as_pydantic_did(name: str) -> None:
    for value in VALUES:
        assert outcome(Ours, {name: value}) == outcome(Theirs, {name: value}), (name, value)


def test_every_problem_is_named_and_unknown_names_are_refused() -> None:
    values = {"count": "0", "names": ["a", 5, None], "flag": "maybe", "bogus": 1}
    assert outcome(Ours, values) == outcome(Theirs, values)
    assert len(outcome(Ours, values)) == 5


def test_what_was_given_is_known_and_a_copy_takes_updates() -> None:
    made = Ours(count="3")
    assert made.count == 3 and made.model_fields_set == {"count"}
    copy = made.model_copy(update={"text": "y"})
    assert (copy.text, copy.count, copy.model_fields_set) == ("y", 3, {"count", "text"})
    assert made == Ours(count=3) != copy
    assert Ours.model_fields["count"].default == 8
    assert Ours.model_fields["some"].annotation == int | None
