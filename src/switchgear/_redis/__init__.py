"""Redis drivers for shared breaker state: codec, thread driver, task driver."""
