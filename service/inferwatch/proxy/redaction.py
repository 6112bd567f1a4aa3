"""Redaction of inference log records, applied before a record leaves the process.

Two kinds, both on the writer's thread (never on the request path):

Named fields (``--payload-log-redact`` / ``INFERWATCH_PAYLOAD_LOG_REDACT``)
    A comma-separated list of names, each with a mode: ``NAME`` or ``NAME:drop`` removes the
    field, ``NAME:hash`` replaces each value by a keyed hash. A name matches, case-insensitively,
    a column of tabular input and a key of a JSON object anywhere in a record's inputs, params and
    answer (a chat request's ``user``, a ``metadata`` object, a key inside a record of
    ``dataframe_records`` ...). The hash is the first 32 hex digits of HMAC-SHA256 with the key in
    ``--payload-log-key-file``: equal values give equal hashes, in every
    process that shares the key, so hashed columns still join and count; without the key a hash
    cannot be reversed by trying likely values (a plain hash of an e-mail address or a phone number
    can). ``null`` stays ``null``.
Patterns in free text (``--payload-log-mask`` / ``INFERWATCH_PAYLOAD_LOG_MASK``)
    In every string value left (chat messages, text columns, error messages, a GenAI answer):
    ``email`` replaces e-mail addresses by ``<email>``, ``digits`` replaces runs of 9 or more
    digits, single spaces or dashes allowed between them (card, account and phone numbers), by
    ``<digits>``. Numbers that are JSON numbers are not text and are not masked: name their column.

Example::

    INFERWATCH_PAYLOAD_LOG_REDACT="email:drop,customer_id:hash,notes" \\
    INFERWATCH_PAYLOAD_LOG_KEY_FILE=/run/secrets/inference-log-key inferwatch serve ...
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Collection, Mapping

DROP, HASH = "drop", "hash"
MODES = (DROP, HASH)
EMAIL, DIGITS = "email", "digits"
MASKS = {
    # The look-behind starts a match only where a run of address characters starts, so a long
    # word without "@" is scanned once, not once per character.
    EMAIL: (r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}", "<email>"),
    DIGITS: (r"\d(?:[ -]?\d){8,}", "<digits>"),
}
HASH_HEX_DIGITS = 32
# Types of values that are neither text nor hold any (a numeric column is checked in one pass).
_PLAIN = frozenset((int, float, bool, type(None)))


class Redactor:
    """Drops or hashes named fields and masks patterns in text, returning new values (the
    request's parsed payload, which other observers read, is never changed)."""

    def __init__(self, rules: Mapping[str, str] | None = None, masks: Collection[str] = (EMAIL, DIGITS),
                 hash_key: bytes | None = None) -> None:
        self._rules = {name.casefold(): mode for name, mode in (rules or {}).items()}
        if HASH in self._rules.values() and not hash_key:
            raise ValueError("hashing a field needs a key")
        self._key = hash_key or b""
        replacements = [MASKS[kind] for kind in masks]
        self._pattern = re.compile("|".join(f"({pattern})" for pattern, _ in replacements)) if replacements else None
        self._replacements = [replacement for _, replacement in replacements]
        self.active = bool(self._rules or self._pattern)

    def columns(self, columns: dict[str, list]) -> dict[str, list]:
        """Tabular input given as columns: named columns dropped or hashed, text masked."""
        if not self.active:
            return columns
        out = {}
        for name, values in columns.items():
            mode = self._rules.get(name.casefold()) if self._rules else None
            if mode == DROP:
                continue
            out[name] = [self.hash(v) for v in values] if mode == HASH else self.value(values)
        return out

    def value(self, value):
        """Any JSON value: keys named in the rules dropped or hashed at every depth, text masked."""
        if not self.active:
            return value
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is list:
            if _PLAIN.issuperset(map(type, value)):  # numbers, booleans, nulls: nothing to redact
                return value
            return [self.value(v) for v in value]
        if kind is dict:
            out = {}
            for key, item in value.items():
                mode = self._rules.get(key.casefold()) if self._rules and type(key) is str else None
                if mode == DROP:
                    continue
                out[key] = self.hash(item) if mode == HASH else self.value(item)
            return out
        return value

    def text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(self._replace, text)

    def _replace(self, match: re.Match) -> str:
        return self._replacements[match.lastindex - 1]

    def hash(self, value) -> str | None:
        if value is None:
            return None
        canonical = value if type(value) is str else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        return hmac.new(self._key, canonical.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:HASH_HEX_DIGITS]
