"""Producer rules: what tokenbridge corrects or skips for one instrumentation library.

A span names the library that made it by its instrumentation scope (name and version). Most
libraries follow the OTel GenAI token rules and need no rule. The ones that depart are listed in
``DEFAULT_PRODUCER_RULES`` (data, checked against recorded output of each library under
``tests/fixtures/``); ``mapping.producer_rules`` in the configuration adds rules or replaces a
default one (same scope and versions).

A rule can say:

- ``input_excludes_cache``: the library reports ``gen_ai.usage.input_tokens`` without the cache
  reads and writes (Anthropic's own ``input_tokens``), against the OTel rule that input includes
  them. tokenbridge stores input + cache read + cache write. Example, OpenLIT's Anthropic
  instrumentation for a call with 12 uncached, 4000 cache-read and 300 cache-write tokens sends
  ``input_tokens=12, cache_read=4000, cache_creation=300``; stored: 4312 prompt tokens, 4000
  cached, 300 cache-write.
- ``operations``: the library's own operation names (LiteLLM's call type ``completion`` is a
  chat completion, while the generic name ``completion`` is a text completion).
- ``usage_object``: an attribute holding the provider's whole usage as a Python or JSON literal
  (LiteLLM's ``metadata.usage_object``), read for the counts the library leaves out of
  ``gen_ai.usage.*`` (cached input, reasoning output).
- ``ignore``: spans of this scope repeat another instrumentation's span of the same call; they
  are ignored with this reason.

Rules are looked up once per (scope name, scope version) and remembered: the lookup costs one
dict probe per span.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from collector import conventions as conv
from collector.model import Operation

MAX_REMEMBERED_SCOPES = 4096


@dataclasses.dataclass(frozen=True)
class ProducerRule:
    """What to correct for the spans of one instrumentation scope (a version range of it)."""

    scope: str
    """Instrumentation scope name, exactly as the library sends it."""
    versions: str = ""
    """PEP 440 specifiers of the scope version (``">=1.30,<2"``); empty: any version, and
    spans whose scope has no version. A non-empty range never matches a missing version."""
    input_excludes_cache: bool = False
    operations: Mapping[str, Operation] = dataclasses.field(default_factory=dict)
    usage_object: str | None = None
    ignore: str | None = None
    """Reason to ignore the spans; None: they count."""
    note: str = ""
    """What the rule corrects and where that was seen (documentation only)."""

    def __post_init__(self) -> None:
        try:
            SpecifierSet(self.versions)
        except InvalidSpecifier:
            raise ValueError(f"{self.scope}: bad version range {self.versions!r}") from None

    def matches(self, name: str, version: str) -> bool:
        if name != self.scope:
            return False
        if not self.versions:
            return True
        try:
            return Version(version) in SpecifierSet(self.versions, prereleases=True)
        except InvalidVersion:
            return False


_LITELLM_CALL_TYPES = {
    "completion": Operation.CHAT_COMPLETION,
    "acompletion": Operation.CHAT_COMPLETION,
}

DEFAULT_PRODUCER_RULES: tuple[ProducerRule, ...] = (
    ProducerRule(
        scope="openlit.instrumentation.anthropic",
        input_excludes_cache=True,
        note="OpenLIT 1.45.0 (no scope version sent): gen_ai.usage.input_tokens is Anthropic's "
        "input_tokens, without cache reads and writes",
    ),
    ProducerRule(
        scope="litellm",
        operations=_LITELLM_CALL_TYPES,
        usage_object=conv.LITELLM_USAGE_OBJECT,
        note="LiteLLM 1.110.2 callback: call types as operation names; cached and reasoning "
        "tokens only in metadata.usage_object",
    ),
    ProducerRule(
        scope="com.anthropic.sdk.python",
        ignore="the Anthropic SDK's own span, repeated by an instrumentation library's span",
        note="anthropic 2.14.0 traces its calls itself once an SDK tracer provider is set; "
        "OpenLLMetry and OpenInference spans of the same calls repeat its usage",
    ),
)


@dataclasses.dataclass(frozen=True)
class ScopeRule:
    """The rules matching one scope, merged (the first rule that sets a field wins)."""

    input_excludes_cache: bool
    operations: Mapping[str, Operation]
    usage_object: str | None
    ignore: str | None


class ProducerRules:
    """Rule lookup by instrumentation scope, remembered per (name, version)."""

    def __init__(self, rules: Iterable[ProducerRule]) -> None:
        self.rules = tuple(rules)
        self._scopes = frozenset(rule.scope for rule in self.rules)
        self._known: dict[tuple[str, str], ScopeRule | None] = {}
        self.attributes = frozenset(r.usage_object for r in self.rules if r.usage_object)
        """Attribute keys the rules read (decoders must keep them)."""

    def for_scope(self, scope: tuple[str, str]) -> ScopeRule | None:
        try:
            return self._known[scope]
        except KeyError:
            pass
        rule = self._resolve(*scope) if scope[0] in self._scopes else None
        if len(self._known) < MAX_REMEMBERED_SCOPES and len(scope[0]) + len(scope[1]) <= 512:
            self._known[scope] = rule  # bounded: a sender cannot make it hold large strings
        return rule

    def _resolve(self, name: str, version: str) -> ScopeRule | None:
        matching = [r for r in self.rules if r.matches(name, version)]
        if not matching:
            return None
        operations: dict[str, Operation] = {}
        for rule in reversed(matching):
            operations.update(rule.operations)
        return ScopeRule(
            input_excludes_cache=next(
                (r.input_excludes_cache for r in matching if r.input_excludes_cache), False
            ),
            operations=operations,
            usage_object=next((r.usage_object for r in matching if r.usage_object), None),
            ignore=next((r.ignore for r in matching if r.ignore is not None), None),
        )


def merged(defaults: Iterable[ProducerRule], extra: Iterable[ProducerRule]) -> list[ProducerRule]:
    """``extra`` rules first; a default with the same scope and versions as one is dropped."""
    extra = list(extra)
    replaced = {(r.scope, r.versions) for r in extra}
    return extra + [r for r in defaults if (r.scope, r.versions) not in replaced]


_USAGE_KEYS = {
    "cached_tokens": "input_cached_token",
    "cache_read_input_tokens": "input_cached_token",
    "cache_creation_input_tokens": "cache_write_input_token",
    "cache_write_tokens": "cache_write_input_token",
    "reasoning_tokens": "reasoning_output_token",
}
_USAGE_COUNT = re.compile("[\"'](" + "|".join(_USAGE_KEYS) + r")[\"']\s*:\s*(\d{1,18})\b")


def usage_counts(text: object) -> dict[str, int]:
    """The cached, cache-write and reasoning counts in a usage literal (JSON, or a Python dict
    repr as LiteLLM writes it); the first of each key wins, zeros and unreadable values are
    left out. A scan, not a parse: it runs on the hot path. Example: ``"{'prompt_tokens': 1200,
    'prompt_tokens_details': {'cached_tokens': 1024}}"`` -> ``{"input_cached_token": 1024}``."""
    if not isinstance(text, str):
        return {}
    out: dict[str, int] = {}
    for key, digits in _USAGE_COUNT.findall(text):
        value = int(digits)
        if value > 0:
            out.setdefault(_USAGE_KEYS[key], value)
    return out
