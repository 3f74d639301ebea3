"""Repository tooling (not part of the installed ``switchgear`` package)."""
