"""Type checks of configuration values read from JSON/YAML, with the field named: ``num_queries: "sixteen"`` or
``depths: "1,1,2,1"`` fail here with a sentence, not later deep inside a layer (or, worse, silently as 7 stages)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any

_KINDS = {str: "text", bool: "true/false", int: "a whole number", float: "a number", list: "a list",
          dict: "a mapping"}


def _describe(value: Any) -> str:
    return f"{value!r} ({_KINDS.get(type(value), type(value).__name__)})"


def check_field_types(where: str, values: Mapping[str, Any], *, ints: Iterable[str] = (),
                      numbers: Iterable[str] = (), bools: Iterable[str] = (), int_lists: Iterable[str] = (),
                      strings: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` naming the first field of ``values`` whose value has the wrong type; ``None`` passes.

    ints: whole numbers (``True`` is not one); numbers: ints or floats; bools: ``true``/``false``; int_lists: lists
    (or other sequences) of whole numbers; strings: text. ``where`` names the owner
    (``"SwinConfig"``, ``"training settings"``).
    """
    def fail(name: str, wanted: str, example: str = "") -> None:
        raise ValueError(f"{where}: {name} must be {wanted}, got {_describe(values[name])}"
                         + (f"; write e.g. {name}: {example}." if example else "."))

    for name in ints:
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, Integral)):
            fail(name, "a whole number")
    for name in numbers:
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
            fail(name, "a number")
    for name in bools:
        value = values.get(name)
        if value is not None and not isinstance(value, bool):
            fail(name, "true or false")
    for name in int_lists:
        value = values.get(name)
        if value is not None and (isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__")
                                  or any(isinstance(v, bool) or not isinstance(v, Integral) for v in value)):
            fail(name, "a list of whole numbers", "[2, 2, 6, 2]")
    for name in strings:
        value = values.get(name)
        if value is not None and not isinstance(value, str):
            fail(name, "text")
