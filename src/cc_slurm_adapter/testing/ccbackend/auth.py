"""Ed25519 JWTs as cc-backend issues and checks them (contract §3).

Only ``alg: EdDSA`` is accepted. ``exp`` and ``nbf`` are enforced without leeway.
Error texts follow golang-jwt v5, which cc-backend uses. Header and claims are decoded
as Go decodes JSON into ``any`` (:mod:`.gojson`: nesting up to 10,000 levels, numbers
as float64, so ``1e400`` and ``NaN`` make a malformed token), and the time claims are
converted as golang-jwt converts them (see :func:`_go_unix_seconds`). A verified signature is
cached per token string (one Ed25519 verification costs about 0.2 ms), but the
time claims are checked again on every request.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from .gojson import GoJSONError, loads

__all__ = ["KeyPair", "TokenError", "TokenVerifier", "VerifiedToken", "extract_token"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UNIX_TO_INTERNAL = 62_135_596_800  # Go's time: seconds from year 1 to 1970

# Algorithms golang-jwt knows; any other name is "unavailable".
_KNOWN_ALGS = frozenset({
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA", "none",
})


class TokenError(Exception):
    """A token cc-backend would refuse; ``str()`` is golang-jwt's message."""


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _b64url_decode(text: str) -> bytes:
    """Go's RawURLEncoding: URL alphabet only, no padding; Go's error text."""
    for i, ch in enumerate(text):
        if ch not in _B64URL:
            raise ValueError(f"illegal base64 data at input byte {i}")
    if len(text) % 4 == 1:
        raise ValueError(f"illegal base64 data at input byte {len(text) - 1}")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class KeyPair:
    """An Ed25519 key pair, convertible to cc-backend's env variable format."""

    def __init__(self, seed: bytes | None = None) -> None:
        self._private = (Ed25519PrivateKey.from_private_bytes(seed) if seed is not None
                         else Ed25519PrivateKey.generate())
        self.public_key: Ed25519PublicKey = self._private.public_key()

    @property
    def seed(self) -> bytes:
        return self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    @property
    def public_bytes(self) -> bytes:
        return self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)

    def env(self) -> dict[str, str]:
        """``JWT_PUBLIC_KEY``/``JWT_PRIVATE_KEY`` as a real cc-backend reads them."""
        return {
            "JWT_PUBLIC_KEY": base64.b64encode(self.public_bytes).decode(),
            "JWT_PRIVATE_KEY": base64.b64encode(self.seed + self.public_bytes).decode(),
        }

    def make_token(self, *, sub: str | None = "adapter", roles: Sequence[str] | None = ("api",),
                   exp: float | None = None, nbf: float | None = None,
                   iat: float | None = None, alg: str = "EdDSA",
                   extra: dict[str, Any] | None = None) -> str:
        """A signed JWT. ``None`` leaves a claim out. ``alg`` other than EdDSA only
        changes the header (useful to test the server's refusal)."""
        claims: dict[str, Any] = {}
        if sub is not None:
            claims["sub"] = sub
        if roles is not None:
            claims["roles"] = list(roles)
        claims["iat"] = int(time.time() if iat is None else iat)
        if exp is not None:
            claims["exp"] = int(exp)
        if nbf is not None:
            claims["nbf"] = int(nbf)
        claims.update(extra or {})
        header = _b64url_encode(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        payload = _b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode("ascii")
        return f"{header}.{payload}.{_b64url_encode(self._private.sign(signing_input))}"


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The claims of a token whose signature is good (time claims not yet checked)."""

    sub: str | None
    roles: tuple[str, ...] | None
    exp: float | None
    nbf: float | None

    def check_times(self, now: float) -> None:
        # golang-jwt v5: exp must be in the future, nbf not in the future, no leeway.
        current = _go_unix_seconds(now)
        if self.exp is not None and not current < _go_unix_seconds(self.exp):
            raise TokenError("token has invalid claims: token is expired")
        if self.nbf is not None and current < _go_unix_seconds(self.nbf):
            raise TokenError("token has invalid claims: token is not valid yet")


class TokenVerifier:
    """Verifies tokens against one public key, with a bounded cache."""

    def __init__(self, public_key: Ed25519PublicKey, *, cache_size: int = 4096) -> None:
        self._key = public_key
        self._cache: dict[str, VerifiedToken | TokenError] = {}
        self._cache_size = cache_size
        self.verifications = 0  # signature checks actually done (for tests/bench)

    def verify(self, token: str, now: float | None = None) -> VerifiedToken:
        """The verified claims, or :class:`TokenError` with golang-jwt's text."""
        cached = self._cache.get(token)
        if cached is None:
            try:
                cached = self._verify_signature(token)
            except TokenError as exc:
                cached = exc
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[token] = cached
        if isinstance(cached, TokenError):
            raise cached
        cached.check_times(time.time() if now is None else now)
        return cached

    def _verify_signature(self, token: str) -> VerifiedToken:
        self.verifications += 1
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("token is malformed: token contains an invalid number of segments")
        header = _decode_segment(parts[0], "header")
        claims = _decode_segment(parts[1], "claim")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenError("token is malformed: could not JSON decode claim")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in _KNOWN_ALGS:
            raise TokenError("token is unverifiable: signing method (alg) is unavailable")
        if alg != "EdDSA":
            raise TokenError(
                "token is unverifiable: error while executing keyfunc: "
                "only Ed25519/EdDSA supported")
        try:
            signature = _b64url_decode(parts[2])
            self._key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
        except (ValueError, binascii.Error, InvalidSignature):
            raise TokenError("token signature is invalid: ed25519: verification error"
                             ) from None
        return VerifiedToken(
            sub=claims["sub"] if isinstance(claims.get("sub"), str) else None,
            roles=_roles(claims.get("roles")),
            exp=_number(claims.get("exp"), "exp"),
            nbf=_number(claims.get("nbf"), "nbf"),
        )


def _go_unix_seconds(value: float) -> int:
    """A claim's seconds as Go's time.Time holds them after golang-jwt's
    ``time.Unix(int64(f), …)``: float→int64 beyond its range gives the minimum int64
    (amd64), and adding the year-1 offset wraps. Measured on v1.5.4: ``exp`` 9.2e18 is
    valid, 9.2233720e18, 1e19 and 1e300 are expired; ``nbf`` 1e19 and 1e300 are valid."""
    whole = math.trunc(value)
    if not _INT64_MIN <= whole <= _INT64_MAX:
        whole = _INT64_MIN
    wrapped = (whole + _UNIX_TO_INTERNAL + 2**63) % 2**64 - 2**63
    return wrapped


def _decode_segment(segment: str, what: str) -> Any:
    try:
        raw = _b64url_decode(segment)
    except (ValueError, binascii.Error) as exc:
        raise TokenError(f"token is malformed: could not base64 decode {what}: {exc}"
                         ) from None
    try:
        return loads(raw, float64_numbers=True)
    except GoJSONError as exc:
        raise TokenError(f"token is malformed: could not JSON decode {what}: {exc}") from None


def _roles(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(r for r in value if isinstance(r, str))


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"token has invalid claims: invalid type for claim: {name} is invalid")
    return float(value)


def extract_token(headers: dict[str, str]) -> str | None:
    """The token as cc-backend finds it: ``X-Auth-Token`` first, then
    ``Authorization`` with a case-sensitive ``Bearer `` prefix stripped (§3.2).
    ``headers`` has lower-cased names."""
    token = headers.get("x-auth-token", "")
    if token:
        return token
    auth = headers.get("authorization", "")
    if not auth:
        return None
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else auth
