"""What a value becomes once stored as JSON, without a round trip when it is plain already.

Inputs and stage answers are kept exactly as later reads return them. A JSON round trip
(``json.loads(json.dumps(value))``) says what that is, but costs an encode and a decode of data
that is, nearly always, plain JSON data already; such data is only copied here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

__all__ = ["as_stored", "deeper_than", "dumps"]


def _reused_encoder() -> Callable[[Any], str]:
    """``json.dumps`` with its defaults, on one C encoder made once.

    ``json.dumps`` builds a new C encoder on every call, which for the small payloads of the
    history (a few keys each, several per transition) costs as much as the encoding. The one
    difference: no check for circular references (a cycle fails as ``RecursionError``, not
    ``ValueError``); what is written here are fresh copies of plain data, which have none.
    Without the C accelerator (another interpreter), ``json.dumps`` itself.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.dumps
    defaults = json.JSONEncoder()
    encode = make(
        None,  # markers: no cycle check (see above)
        defaults.default,
        json.encoder.encode_basestring_ascii,  # ensure_ascii=True, as json.dumps
        defaults.indent,
        defaults.key_separator,
        defaults.item_separator,
        defaults.sort_keys,
        defaults.skipkeys,
        defaults.allow_nan,
    )

    def dumps(value: Any) -> str:
        if type(value) is str:  # the C encoder's top level takes containers and scalars
            return json.dumps(value)
        return "".join(encode(value, 0))

    return dumps


#: Encode *value* exactly as ``json.dumps(value)`` does (plain data: see :func:`_reused_encoder`).
dumps: Callable[[Any], str] = _reused_encoder()

#: Past this an int may have more digits than ``int`` turns into text by default (4,300).
_HUGE = 2**14_000


class _NotPlain(Exception):
    """A value JSON would change (a tuple, a non-string key, an object, NaN ...)."""


def _plain_copy(value: Any) -> Any:
    """Copy *value* when it is already what JSON gives back (exact types, finite floats)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        # An int of thousands of digits is left to the encoder, which refuses it (ValueError).
        if -_HUGE < value < _HUGE:
            return value
        raise _NotPlain
    if kind is float:
        if math.isfinite(value):
            return value
        raise _NotPlain
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            out[key] = _plain_copy(item)
        return out
    if kind is list:
        return [_plain_copy(item) for item in value]
    raise _NotPlain


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's pairs as a dict; two keys written as one string are refused, not merged."""
    out = dict(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(
            f"two keys are both written as {key!r} (a key that is not a string becomes one), "
            "so one value would be lost"
        )
    return out


def as_stored(
    value: Any, default: Callable[[Any], Any] | None = None, *, unique_keys: bool = False
) -> Any:
    """Return *value* as it reads back from storage: what a JSON round trip makes of it.

    Plain data is copied; anything else takes the round trip (tuples become lists, keys
    strings, and objects pass through *default*, e.g. ``str``). With *unique_keys*, a mapping
    whose keys JSON writes as the same string (``1`` and ``"1"``, ``None`` and ``"null"``) is
    refused; otherwise the last of them is kept, as ``json.loads`` keeps it.

    Raises:
        TypeError: A value JSON cannot encode (and *default* did not convert).
        ValueError: NaN or an infinity (not JSON), a circular reference, or (*unique_keys*)
            keys that collide.
        RecursionError: Nested too deeply.
    """
    try:
        return _plain_copy(value)
    except _NotPlain:
        pass
    text = json.dumps(value, default=default, allow_nan=False)
    return json.loads(text, object_pairs_hook=_unique_keys if unique_keys else None)


def deeper_than(value: Any, levels: int) -> bool:
    """True when *value* (JSON data) nests dicts and lists more than *levels* levels.

    *value* itself is the first level when it is a dict or a list; a scalar has none.
    Recursive over the containers only, and never past *levels* + 1 frames: the data it is
    asked about was copied by :func:`as_stored` first, which recurses all the way down.
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        return False
    if levels == 0:
        return True
    for item in value.values() if kind is dict else value:
        if deeper_than(item, levels - 1):
            return True
    return False
