"""The codec of the Lua script that is a shared breaker's whole protocol with Redis.

One script, ``EXCHANGE`` (``exchange.lua`` beside this module), runs per breaker per round.
Redis runs a script atomically, so reading the state, applying time-based transitions,
counting outcomes, handing out trial permits and writing the result back can never
interleave with another process doing the same: there is no read-modify-write race to lose.
Time is Redis's own clock (``TIME``), so every host agrees on when an OPEN breaker's
``open_timeout`` has elapsed.

Keys of a breaker named ``NAME`` under prefix ``P`` (the name is in braces, a Redis Cluster
hash tag, so all three keys live in one slot):

* ``P{NAME}`` hash: ``state``, ``epoch`` (+1 per transition), ``since`` (ms, Redis clock),
  ``failures`` (consecutive, CLOSED), ``successes`` (trial successes, HALF_OPEN), ``seq``
  (last trial permit id), ``opens`` (transitions to OPEN so far), ``backoffs`` (failed trial
  episodes in a row) and ``interval`` (ms the current or next OPEN episode lasts);
* ``P{NAME}:permits`` hash: trial permit id -> ms it was granted (HALF_OPEN only);
* ``P{NAME}:window`` hash: ``<slot>:c|f|s`` -> calls / failures / slow calls per slot of
  ``window / 60`` (only with rate rules).

Every write refreshes the keys' TTL, so a breaker nobody uses disappears.

Every transition is announced on the channel ``P`` + ``events`` as ``"<epoch> P{NAME}"``
(:func:`announcement`), so the processes sharing the breaker refresh it at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from .._breaker.storage import Outbox, Peer, Reply, Rules

__all__ = [
    "EVENTS",
    "EXCHANGE",
    "EXCHANGE_SHA",
    "announcement",
    "exchange_args",
    "keys_for",
    "parse_reply",
    "queue",
    "replies",
]

# The script ships as package data; its SHA1 names it in Redis's script cache (EVALSHA).
EXCHANGE = resources.files(__package__).joinpath("exchange.lua").read_text(encoding="utf-8")

EXCHANGE_SHA = hashlib.sha1(EXCHANGE.encode()).hexdigest()


#: The channel of a prefix's announcements is the prefix followed by this.
EVENTS = "events"


def announcement(prefix: str, payload: object) -> tuple[str, int] | None:
    """``(breaker name, epoch)`` of an announcement on ``prefix``'s channel (None: not one)."""
    text = _text(payload)
    epoch, _, key = text.partition(" ")
    head = prefix + "{"
    if not (key.startswith(head) and key.endswith("}") and epoch.isdigit()):
        return None
    return key[len(head) : -1], int(epoch)


def keys_for(prefix: str, name: str) -> tuple[str, str, str]:
    """The state, permits and window keys of breaker ``name``."""
    base = f"{prefix}{{{name}}}"
    return base, base + ":permits", base + ":window"


def _ms(seconds: float) -> int:
    return max(round(seconds * 1000.0), 0)


def exchange_args(
    rules: Rules, outbox: Outbox, key_ttl: float, channel: str = ""
) -> list[str | int]:
    """ARGV for ``EXCHANGE`` (see the script for the meaning of each position)."""
    args: list[str | int] = [
        rules.failure_threshold,
        rules.success_threshold,
        max(_ms(rules.open_timeout), 1),
        rules.half_open_max_calls,
        "" if rules.failure_rate_threshold is None else repr(rules.failure_rate_threshold),
        "" if rules.slow_call_rate_threshold is None else repr(rules.slow_call_rate_threshold),
        _ms(rules.window),
        rules.minimum_calls,
        max(_ms(key_ttl), 1),
        outbox.seed_state,
        _ms(outbox.seed_age),
        outbox.epoch,
        1 if outbox.reset else 0,
        outbox.streak,
        outbox.calls,
        outbox.failures,
        outbox.slow,
        outbox.command,
        outbox.acquire,
        outbox.reseed_from,
        outbox.lead,
        outbox.peak,
        "" if outbox.trip_epoch is None else outbox.trip_epoch,
        channel,  # "" when nobody listens: nothing is announced
        repr(float(rules.backoff_factor)),
        max(_ms(rules.max_open_timeout), 1),
        repr(float(outbox.jitter_draw)),
    ]
    for permit, outcome in outbox.trials:
        args.append(permit)
        args.append(int(outcome))
    return args


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_reply(raw: object) -> Reply:
    """Turn the script's array answer into a :class:`Reply` (bytes or decoded strings)."""
    if not isinstance(raw, Sequence) or len(raw) != 12:
        raise ValueError(f"unexpected answer from the switchgear script: {raw!r}")
    before, state, epoch, age, failures, successes, permits, moves, granted, seeded = raw[:10]
    backoffs, interval = raw[10:]
    flat = [_text(x) for x in moves]
    if len(flat) % 2:
        raise ValueError(f"unexpected moves from the switchgear script: {flat!r}")
    return Reply(
        before=_text(before),
        state=_text(state),
        epoch=int(epoch),
        age=max(int(age), 0) / 1000.0,
        failures=int(failures),
        successes=int(successes),
        permits=int(permits),
        moves=tuple(zip(flat[0::2], flat[1::2], strict=True)),
        granted=tuple(int(x) for x in granted),
        seeded=bool(int(seeded)),
        backoffs=int(backoffs),
        interval=max(int(interval), 1) / 1000.0,
    )


def queue(pipe: Any, work: Sequence[tuple[Peer, Outbox]], key_prefix: str, key_ttl: float) -> None:
    """Add one exchange per breaker of a round to ``pipe`` (a pipeline, sync or asyncio).

    Transitions are always announced, whether or not this process listens: another process
    of the fleet may rely on hearing them.
    """
    channel = key_prefix + EVENTS
    for peer, outbox in work:
        keys = keys_for(key_prefix, peer.name)
        args = exchange_args(peer.rules, outbox, key_ttl, channel)
        pipe.evalsha(EXCHANGE_SHA, 3, *keys, *args)


def replies(raw: Sequence[object]) -> list[Reply] | None:
    """The round's replies; None when Redis had no copy of the script (load it, resend).

    Redis answers NOSCRIPT before running anything, so resending the whole round is safe.
    Any other error fails the round (the breakers decide locally until Redis answers).
    """
    if any(isinstance(r, NoScriptError) for r in raw):
        return None
    for r in raw:
        if isinstance(r, Exception):
            raise r
    return [parse_reply(r) for r in raw]
