"""The HTTP middlewares' shared core: options, routes, endpoints, auth, framework glue."""
