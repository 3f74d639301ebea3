"""Redis Cluster: a round's exchanges split by the primary that owns each breaker's keys.

A breaker's three keys share one hash tag (its name), so one node holds all of them and its
exchange script runs there. A round sends one pipeline per node, so a node that fails takes
down only the breakers whose keys it owns: they decide locally (degraded mode) while the
others keep sharing state, and they come back when the node (or its replica) answers.

With push on, idle breakers do not exchange at all, so a node's failure would go unnoticed
by them; each process therefore pings every primary it has not heard from for
``max_staleness / 2`` (one command per node, not per breaker).

With a plain client everything is one group, named ``""`` (the whole store).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import redis.asyncio.cluster
import redis.cluster

from .codec import keys_for

__all__ = ["by_node", "is_cluster", "members", "owner", "quiet", "round_groups"]

_W = TypeVar("_W")


def is_cluster(client: object) -> bool:
    """Whether ``client`` is a redis-py cluster client (sync or asyncio)."""
    return isinstance(client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster))


def owner(client: Any, key_prefix: str, name: str) -> str:
    """The name (``host:port``) of the node holding breaker ``name``'s keys; ``""`` if none."""
    try:
        node = client.get_node_from_key(keys_for(key_prefix, name)[0])
    except Exception:  # the slot is not covered right now (the node is gone)
        return ""
    return str(getattr(node, "name", "") or "")


def by_node(
    client: Any, key_prefix: str, work: Sequence[tuple[Any, _W]]
) -> dict[str, list[tuple[Any, _W]]]:
    """``work`` (pairs of a breaker and what to send) grouped by the node of each breaker."""
    groups: dict[str, list[tuple[Any, _W]]] = {}
    for item in work:
        groups.setdefault(owner(client, key_prefix, item[0].name), []).append(item)
    return groups


def round_groups(
    client: Any, key_prefix: str, work: Sequence[tuple[Any, _W]]
) -> list[tuple[str, str, list[tuple[Any, _W]]]]:
    """A round's pipelines: ``(where, node label for the log, work)`` each.

    With a plain client, one group for the whole store, named ``""``.
    """
    if not is_cluster(client):
        return [("", "", list(work))] if work else []
    return [
        (where, where or "(no node owns the slot)", group)
        for where, group in by_node(client, key_prefix, work).items()
    ]


def members(client: Any, key_prefix: str, peers: Sequence[Any], where: str) -> list[Any]:
    """The breakers among ``peers`` whose keys the node ``where`` holds."""
    return [p for p in peers if owner(client, key_prefix, p.name) == where]


def quiet(client: Any, heard: dict[str, float], now: float, interval: float) -> list[Any]:
    """The primaries not heard from for ``interval`` seconds (to ping)."""
    try:
        nodes = [node for node in client.get_nodes() if node.server_type == "primary"]
    except Exception:
        return []
    return [node for node in nodes if now - heard.get(node.name, 0.0) >= interval]
