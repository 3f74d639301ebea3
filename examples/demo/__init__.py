"""The switchgear live demo: ``python -m examples.demo`` (or ``scripts/demo``).

:mod:`examples.demo.app` is the service (``create_app()``), :mod:`examples.demo.load` the
traffic, :mod:`examples.demo.__main__` the server, the scripted scenario and its output.
"""
