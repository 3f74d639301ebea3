"""The real redis-server fixtures of :mod:`tests.unit.redis.test_redis`, for every module here."""

from tests.unit.redis.test_redis import own_server, server, storages

__all__ = ["own_server", "server", "storages"]
