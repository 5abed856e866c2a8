"""Attributes -> usage report: the configurable alias table and the typed field extraction.

``FieldMapper.extract`` turns span or point attributes (then resource attributes) into report
keyword arguments. Values of the wrong type reject the item (``BadValue``), never the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from collector import conventions as conv
from collector.mapping.values import BadValue, as_count, as_flag, as_id, as_text
from collector.model import Operation

Attributes = Mapping[str, Any]

_COERCE: dict[str, Callable[[str, object], object]] = {
    "model": as_text,
    "model_id": as_id,
    "provider_id": as_id,
    "provider_name": as_text,
    "provider_type": as_text,
    "user_id": as_text,
    "access_key": as_text,
    "organization_id": as_text,
    "model_route_id": as_id,
    "cluster_id": as_id,
    "input_token": as_count,
    "output_token": as_count,
    "total_token": as_count,
    "input_cached_token": as_count,
    "cache_write_input_token": as_count,
    "reasoning_output_token": as_count,
    "completed": as_flag,
    "output_chunk_count": as_count,
    "request_content_bytes": as_count,
    "stream": as_flag,
    "request_id": as_text,
}
MAPPABLE_FIELDS = frozenset(_COERCE) | {"operation"}
MAX_REMEMBERED_OPERATIONS = 1024


@dataclasses.dataclass(frozen=True)
class MappingRules:
    """The alias table and operation vocabulary (defaults from ``conventions``)."""

    field_keys: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=lambda: dict(conv.DEFAULT_FIELD_KEYS)
    )
    operation_names: Mapping[str, Operation] = dataclasses.field(
        default_factory=lambda: dict(conv.DEFAULT_OPERATION_NAMES)
    )
    skipped_operations: frozenset[str] = conv.DEFAULT_SKIPPED_OPERATIONS
    skipped_span_kinds: frozenset[str] = conv.DEFAULT_SKIPPED_SPAN_KINDS


class FieldMapper:
    """Reads report fields from attributes through the alias table."""

    def __init__(self, rules: MappingRules) -> None:
        unknown = set(rules.field_keys) - MAPPABLE_FIELDS
        if unknown:
            raise ValueError(f"unknown report fields in mapping: {sorted(unknown)}")
        self.rules = rules
        self._fields = tuple(
            (name, tuple(keys), _COERCE[name])
            for name, keys in rules.field_keys.items()
            if name != "operation"
        )
        # Inverted alias table: attribute key -> (field, rank) for each field reading it, so
        # extraction looks at the attributes present instead of probing every alias.
        self._coerce = {name: coerce for name, _keys, coerce in self._fields}
        self._by_key: dict[str, list[tuple[str, int]]] = {}
        for name, keys, _coerce in self._fields:
            for rank, key in enumerate(keys):
                self._by_key.setdefault(key, []).append((name, rank))
        self.wanted: frozenset[str] = frozenset(
            key for keys in rules.field_keys.values() for key in keys
        ) | {conv.OPENINFERENCE_SPAN_KIND, *conv.PRODUCER_IDENTITY}
        """Every attribute key the mapping can read: decoders may skip all others."""
        self._operations: dict[str, tuple[bool, Operation | None]] = {}

    def raw(self, field: str, attrs: Attributes, resource: Attributes) -> tuple[str, Any]:
        """(key, value) of the first alias present, item attributes before resource ones."""
        keys = self.rules.field_keys.get(field, ())
        for source in (attrs, resource):
            for key in keys:
                value = source.get(key)
                if value is not None:
                    return key, value
        return "", None

    def extract(self, attrs: Attributes, resource: Attributes) -> dict[str, Any]:
        """Typed report fields present in the attributes (all but ``operation``): for each
        field the first alias present wins, item attributes before resource ones."""
        found = self._present(attrs)
        if resource:
            for name, hit in self._present(resource).items():
                found.setdefault(name, hit)
        coerce = self._coerce
        try:
            return {name: coerce[name](key, value) for name, (_rank, key, value) in found.items()}
        except BadValue:
            # Report the first bad field in table order, whatever the attribute order.
            for name, _keys, field_coerce in self._fields:
                if name in found:
                    field_coerce(found[name][1], found[name][2])
            raise

    def _present(self, attrs: Attributes) -> dict[str, tuple[int, str, Any]]:
        """field -> (rank, key, value) of its best-ranked alias present in ``attrs``."""
        found: dict[str, tuple[int, str, Any]] = {}
        by_key = self._by_key
        for key, value in attrs.items():
            hits = by_key.get(key)
            if hits is None or value is None:
                continue
            for name, rank in hits:
                best = found.get(name)
                if best is None or rank < best[0]:
                    found[name] = (rank, key, value)
        return found

    def operation(self, raw: object) -> tuple[bool, Operation | None]:
        """(skip, operation) for a raw operation name: agent, tool and workflow operations
        repeat their children's usage and are skipped; unknown names count with no operation."""
        if raw is None:
            return False, None
        if type(raw) is str:
            known = self._operations.get(raw)
            if known is not None:
                return known
        if not isinstance(raw, str):
            raise BadValue(f"operation: expected a string, got {type(raw).__name__}")
        name = raw.strip().lower()
        if name in self.rules.skipped_operations:
            answer: tuple[bool, Operation | None] = (True, None)
        else:
            answer = (False, self.rules.operation_names.get(name) or Operation.parse(name))
        if len(self._operations) < MAX_REMEMBERED_OPERATIONS:
            self._operations[raw] = answer  # senders use a handful of names: remember them
        return answer
