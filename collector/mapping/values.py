"""Coercion of attribute and JSON values into report field types.

Each function returns the typed value or raises ``BadValue`` with a readable reason; the caller
rejects that one item, never the batch.
"""

from __future__ import annotations

import math

MAX_COUNT = 2**63 - 1
MAX_TEXT = 255


class BadValue(ValueError):
    """One item's value cannot be used; the message says which and why."""


def as_count(key: str, value: object) -> int:
    """A token or request count: a non-negative integer (integral floats and digit strings
    too, as JSON senders and some instrumentations send them)."""
    if type(value) is int and 0 <= value <= MAX_COUNT:  # the common case, first
        return value
    if isinstance(value, bool):
        raise BadValue(f"{key}: expected a count, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise BadValue(f"{key}: expected a whole count, got {value!r}")
        number = int(value)
    elif isinstance(value, str):
        parsed = _integer(value)
        if parsed is None:
            raise BadValue(f"{key}: expected a count, got {_show(value)}")
        number = parsed
    else:
        raise BadValue(f"{key}: expected a count, got {type(value).__name__}")
    if number < 0:
        raise BadValue(f"{key}: negative count {number}")
    if number > MAX_COUNT:
        raise BadValue(f"{key}: count {number} out of range")
    return number


def as_id(key: str, value: object) -> int:
    """A GPUStack numeric id (model, provider, route, cluster)."""
    if type(value) is int and -MAX_COUNT <= value <= MAX_COUNT:  # the common case, first
        return value
    if isinstance(value, bool):
        raise BadValue(f"{key}: expected an integer id, got a boolean")
    if isinstance(value, int) and -MAX_COUNT <= value <= MAX_COUNT:
        return value
    if isinstance(value, str):
        parsed = _integer(value)
        if parsed is not None:
            return as_id(key, parsed)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return as_id(key, int(value))
    raise BadValue(f"{key}: expected an integer id, got {_show(value)}")


def as_text(key: str, value: object, limit: int = MAX_TEXT) -> str:
    """A name or identifier; integers are accepted and rendered (user ids are often ints)."""
    if type(value) is str and len(value) <= limit and value.isascii() and "\x00" not in value:
        return value  # the common case, first
    if isinstance(value, str):
        text = value
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        raise BadValue(f"{key}: expected a string, got {type(value).__name__}")
    if len(text) > limit:
        raise BadValue(f"{key}: longer than {limit} characters ({len(text)})")
    if "\x00" in text:
        raise BadValue(f"{key}: contains a NUL character")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: JSON allows it, UTF-8 and SQL do not
            raise BadValue(f"{key}: not valid Unicode text") from None
    return text


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def as_flag(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise BadValue(f"{key}: expected a boolean, got {_show(value)}")


def as_millis(key: str, value: object) -> int | None:
    """A UnixMilli stamp; absent, null or ``<= 0`` mean absent (legacy senders send 0)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadValue(f"{key}: expected UnixMilli, got a boolean")
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    if isinstance(value, str):
        parsed = _integer(value)
        if parsed is None:
            raise BadValue(f"{key}: expected UnixMilli, got {_show(value)}")
        value = parsed
    if not isinstance(value, int):
        raise BadValue(f"{key}: expected UnixMilli, got {type(value).__name__}")
    if value <= 0:
        return None
    if value > 253402300799999:  # 9999-12-31
        raise BadValue(f"{key}: UnixMilli {value} out of range")
    return value


def _integer(text: str) -> int | None:
    """A decimal integer in ASCII digits with an optional sign; ``int()`` alone would also
    take ``1_000`` and non-ASCII digits such as ``'\u0661\u0662'``."""
    digits = text.strip()
    body = digits[1:] if digits[:1] in ("+", "-") else digits
    if not body or len(body) > 40 or not (body.isascii() and body.isdigit()):
        return None
    return int(digits)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
