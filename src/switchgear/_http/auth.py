"""Who may read ``/metrics`` and the status endpoint: a bearer token or a predicate.

Pure policy: :class:`Headers` is built by the ASGI/WSGI adapters from what the server gave
them; :func:`make_auth` turns the ``endpoint_auth`` option into one predicate over it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

__all__ = ["Auth", "Headers", "make_auth"]

logger = logging.getLogger("switchgear")

#: A predicate over the request headers; may return an awaitable under ASGI.
Auth = Callable[["Headers"], Any]


class Headers(Mapping[str, str]):
    """Request headers as a read-only, case-insensitive mapping of ``str`` to ``str``.

    Repeated headers are joined with ``", "`` (RFC 9110 §5.3).

    Example::

        headers = Headers.from_asgi([(b"authorization", b"Bearer s3cret")])
        headers["Authorization"]       # 'Bearer s3cret'
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        merged: dict[str, str] = {}
        for name, value in items:
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        self._items = merged

    @classmethod
    def from_asgi(cls, raw: object) -> Headers:
        """From an ASGI ``scope["headers"]`` list of byte pairs (latin-1, as HTTP/1.1 is)."""
        pairs: list[tuple[str, str]] = []
        if isinstance(raw, (list, tuple)):
            for item in raw:
                try:
                    name, value = item
                    pairs.append((bytes(name).decode("latin-1"), bytes(value).decode("latin-1")))
                except (TypeError, ValueError):
                    continue  # a malformed pair is no header at all
        return cls(pairs)

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> Headers:
        """From a WSGI environ's ``HTTP_*`` (and ``CONTENT_*``) keys."""
        pairs: list[tuple[str, str]] = []
        for key, value in environ.items():
            if not isinstance(key, str) or not isinstance(value, str):
                continue
            if key.startswith("HTTP_"):
                pairs.append((key[5:].replace("_", "-"), value))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                pairs.append((key.replace("_", "-"), value))
        return cls(pairs)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        # Never print credentials into a log.
        return f"<Headers {sorted(self._items)}>"


def _validate_token(token: str) -> str:
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError(
            "endpoint_auth: a bearer token must be a non-empty string of visible ASCII "
            "characters without spaces"
        )
    return token


def make_auth(option: object) -> Auth | None:
    """Validate the ``endpoint_auth`` option and return the predicate it means (None = open).

    A string is a bearer token: the request must send ``Authorization: Bearer <token>``,
    compared in constant time. A callable receives the :class:`Headers` and returns a bool
    (or, under ASGI, an awaitable of one).
    """
    if option is None:
        return None
    if isinstance(option, str):
        expected = ("Bearer " + _validate_token(option)).encode("ascii")

        def bearer(headers: Headers) -> bool:
            given = headers.get("authorization", "")
            try:
                raw = given.encode("latin-1")
            except UnicodeEncodeError:
                return False
            # The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
            if raw[:7].lower() == b"bearer ":
                raw = b"Bearer " + raw[7:].strip()
            return hmac.compare_digest(raw, expected)

        return bearer
    if callable(option):
        return option
    raise TypeError(
        "endpoint_auth must be None, a bearer token string, or a callable taking the "
        f"request headers, not {type(option).__name__}"
    )
