"""Where a setting came from, for error messages: a flag, an environment variable, a key of the
YAML file, or the default; and its value as it may be shown (passwords and tokens masked).

Example: with ``TOKENBRIDGE_DATABASE__URL=postgresq://bridge:s3cret@db/usage`` in the
environment, the error on ``("database", "url")`` reads::

    TOKENBRIDGE_DATABASE__URL=postgresq://bridge:***@db/usage: unknown database scheme ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "TOKENBRIDGE_"
SECRET_KEYS = frozenset({"tokens", "gateway_secret", "otlp_headers"})
MAX_VALUE = 120


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (unparsable text is shown as given)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def shown(loc: tuple[str | int, ...], value: Any) -> str:
    """A value as an error message may show it."""
    if any(part in SECRET_KEYS for part in loc):
        return "***"
    text = value if isinstance(value, str) else repr(value)
    if "url" in loc or "otlp_endpoint" in loc:
        text = mask_url(text)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def _dotted(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.extend(_dotted(value, name + ".") if isinstance(value, Mapping) and value else [name])
    return out


def _names(tree: Mapping[str, Any], prefix: str) -> list[str]:
    return [prefix + key.replace(".", "__").upper() for key in _dotted(tree)]


def _leaf(tree: Any, loc: tuple[str | int, ...]) -> tuple[bool, int]:
    """(present, depth): whether ``tree`` holds a value along ``loc``, and how deep the value
    given there sits (an environment variable or a flag sets one whole value)."""
    node = tree
    for depth, part in enumerate(loc):
        if not isinstance(node, Mapping):
            return True, depth
        if part not in node:
            return False, depth
        node = node[part]
    return True, len(loc)


class Origins:
    def __init__(
        self,
        path: str | Path | None,
        file: Mapping[str, Any],
        env: Mapping[str, Any],
        flags_data: Mapping[str, Any],
        flags: Mapping[str, str],
        model: type[BaseModel],
        merge: Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]],
    ) -> None:
        self._path = path
        self._file = file
        self._env = env
        self._flags_data = flags_data
        self._flags = flags
        self._model = model
        self._merge = merge

    def merged(self) -> dict[str, Any]:
        """The file, then the environment, then the flags: later ones win."""
        return self._merge(self._merge(dict(self._file), self._env), self._flags_data)

    def summary(self) -> str:
        """The sources in use, e.g. ``file tb.yaml, env TOKENBRIDGE_DATABASE__URL, flags
        --grpc-port --http-port``; ``defaults`` when none."""
        parts = [f"file {self._path}"] if self._path is not None else []
        env = sorted(_names(self._env, ENV_PREFIX))
        if env:
            parts.append("env " + " ".join(env))
        flags = sorted(self._flags.get(key, key) for key in _dotted(self._flags_data))
        if flags:
            parts.append("flags " + " ".join(flags))
        return ", ".join(parts) or "defaults"

    def where(self, loc: tuple[str | int, ...]) -> tuple[str, str]:
        """(kind, name): ``flag``, ``env``, ``file`` or ``default``, and how to name it."""
        keys = tuple(p for p in loc if isinstance(p, str))
        dotted = ".".join(keys)
        present, depth = _leaf(self._flags_data, loc)
        if present:
            return "flag", self._flags.get(dotted, dotted)
        present, depth = _leaf(self._env, loc)
        if present:
            return "env", ENV_PREFIX + "__".join(str(p) for p in loc[:depth]).upper()
        if _leaf(self._file, loc)[0]:
            return "file", f"{self._path}: {dotted}"
        return "default", f"{dotted} (default)"

    def describe(self, item: ErrorDetails) -> str:
        loc = tuple(item["loc"])
        kind, name = self.where(loc)
        problem = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            problem = self._unknown(loc, kind)
        value = item.get("input")
        if isinstance(value, Mapping) or value is None:
            return f"{name}: {problem}"
        text = shown(loc, value)
        key = "" if item["type"] == "extra_forbidden" else f" ({'.'.join(map(str, loc))})"
        if kind == "flag":
            return f"{name} {text}{key}: {problem}"
        if kind == "env":
            return f"{name}={text}{key}: {problem}"
        return f"{name} {text}: {problem}"

    def _unknown(self, loc: tuple[str | int, ...], kind: str) -> str:
        known = ", ".join(self._keys(loc[:-1]))
        if kind == "env":
            return (f"not a tokenbridge setting; unset it (TOKENBRIDGE_<SECTION>__<KEY> sets "
                    f"a key; {'sections' if len(loc) == 1 else 'keys'}: {known})")  # fmt: skip
        return f"unknown key; remove it or use one of: {known}"

    def _keys(self, loc: tuple[str | int, ...]) -> list[str]:
        model: Any = self._model
        for part in loc:
            field = model.model_fields.get(part) if isinstance(part, str) else None
            annotation = getattr(field, "annotation", None)
            candidates = [annotation, *getattr(annotation, "__args__", ())]
            model = next((c for c in candidates if isinstance(c, type) and
                          issubclass(c, BaseModel)), None)  # fmt: skip
            if model is None:
                return []
        return list(model.model_fields)
