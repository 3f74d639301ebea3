"""The dynamic resource pool: pool, scaling policy, waiters, observer protocol."""
