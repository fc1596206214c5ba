"""JSON decoding with the limits and repairs of Go's ``encoding/json`` (cc-backend).

Measured against the real cc-backend v1.5.4 (``shared/cc-backend``):

* nesting deeper than 10,000 levels is a syntax error, ``invalid character '[' exceeded
  max depth`` (400 for a body, 401 for a token); up to 10,000 levels decode fine, so a
  deep value must not crash the stand-in with a ``RecursionError``;
* a number that does not fit its Go type (a 5,000-digit integer, ``1e400``) is a type
  error, never Python's int-digit-limit ``ValueError``;
* ``NaN``/``Infinity`` are not JSON;
* invalid UTF-8 bytes and lone UTF-16 surrogates (``"\\ud800"``) in strings become
  U+FFFD: the real server stores and later serves them as such.

:func:`loads` is the one entry point; :class:`BigNumber` marks a number literal that
fits no Go number type, so the struct decoder can name the field.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

__all__ = ["MAX_DEPTH", "BigNumber", "GoJSONError", "loads"]

MAX_DEPTH = 10_000
"""Go's ``encoding/json`` maxNestingDepth."""

_PY_SAFE_DEPTH = 400  # below this, Python's default recursion limit is enough
_DEEP_STACK = 256 * 1024 * 1024
_deep_lock = threading.Lock()
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_T = TypeVar("_T")


class GoJSONError(ValueError):
    """The document is not JSON as Go reads it; ``str()`` is Go's text."""


class BigNumber:
    """A number literal outside every Go number type (kept as its text)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _depth_error(data: bytes) -> GoJSONError | None:
    """Go's error if ``data`` nests deeper than :data:`MAX_DEPTH`, else None."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return None
    brackets = _BRACKET.findall(_STRING.sub(b'""', data))
    steps = (1 if b in (b"[", b"{") else -1 for b in brackets)
    for index, depth in enumerate(itertools.accumulate(steps)):
        if depth > MAX_DEPTH:
            return GoJSONError(f"invalid character {brackets[index].decode()!r} "
                               "exceeded max depth")
    return None


def _on_deep_stack(func: Callable[[], _T]) -> _T:
    """Run ``func`` on a thread with a large stack and recursion limit (for documents
    nested up to :data:`MAX_DEPTH`, which Go accepts)."""
    result: list[_T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(func())
        except BaseException as exc:
            error.append(exc)

    with _deep_lock:
        old_limit = sys.getrecursionlimit()
        old_stack = threading.stack_size()
        sys.setrecursionlimit(max(old_limit, 4 * MAX_DEPTH))
        try:
            threading.stack_size(_DEEP_STACK)
            thread = threading.Thread(target=run, name="gojson-deep")
            thread.start()
            threading.stack_size(old_stack)
            thread.join()
        finally:
            sys.setrecursionlimit(old_limit)
    if error:
        raise error[0]
    return result[0]


def _constant(name: str) -> Any:
    raise GoJSONError(f"invalid character {name[0]!r} looking for beginning of value")


def _fix_surrogates(value: Any) -> Any:
    """Replace lone surrogates in every string (keys too) with U+FFFD, iteratively."""
    def fix(text: str) -> str:
        return _SURROGATE.sub("\ufffd", text)

    if isinstance(value, str):
        return fix(value)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            for i, elem in enumerate(item):
                if isinstance(elem, str):
                    item[i] = fix(elem)
                elif isinstance(elem, list | dict):
                    stack.append(elem)
        elif isinstance(item, dict):
            pairs = list(item.items())
            item.clear()
            for key, elem in pairs:
                if isinstance(elem, str):
                    elem = fix(elem)
                elif isinstance(elem, list | dict):
                    stack.append(elem)
                item[fix(key)] = elem
    return value


def _syntax_error(text: str, exc: json.JSONDecodeError) -> GoJSONError:
    if exc.pos >= len(text):
        return GoJSONError("unexpected EOF")
    ch = text[exc.pos]
    context = ("looking for beginning of value" if exc.pos == 0
               else "looking for beginning of object key string" if "property name" in exc.msg
               else "after object key:value pair" if "delimiter" in exc.msg
               else "looking for beginning of value")
    return GoJSONError(f"invalid character {ch!r} {context}")


def loads(data: bytes, *, float64_numbers: bool = False) -> Any:
    """The first JSON value of ``data``, decoded as Go would accept it.

    ``float64_numbers``: every number must fit a float64 (Go decoding into ``any``, as
    golang-jwt does for token headers and claims); otherwise a too-large number is
    returned as :class:`BigNumber` for the caller's type check.
    Raises :class:`GoJSONError` with Go's text.
    """
    deep = data.count(b"[") + data.count(b"{") > _PY_SAFE_DEPTH
    if not deep and not float64_numbers:
        try:  # fast path: plain, shallow JSON
            return msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            pass
    depth_error = _depth_error(data)
    if depth_error is not None:
        raise depth_error
    text = data.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise GoJSONError("EOF")

    def parse_number(literal: str) -> Any:
        if float64_numbers:
            value = float(literal)
            if math.isinf(value):
                raise GoJSONError(f"json: cannot unmarshal number {literal} into Go value "
                                  "of type float64")
            return value
        if "." in literal or "e" in literal or "E" in literal:
            value = float(literal)
            return value if math.isfinite(value) else BigNumber(literal)
        digits = len(literal.lstrip("-"))
        return int(literal) if digits <= 4000 else BigNumber(literal)

    decoder = json.JSONDecoder(parse_int=parse_number, parse_float=parse_number,
                               parse_constant=_constant)

    def decode() -> Any:
        try:
            value, _end = decoder.raw_decode(text)
        except json.JSONDecodeError as exc:
            raise _syntax_error(text, exc) from None
        if _SURROGATE_ESCAPE.search(text):
            value = _fix_surrogates(value)
        return value

    return _on_deep_stack(decode) if deep else decode()
