"""The circuit breaker: state machine, shared-state link, storage contract, registry."""
