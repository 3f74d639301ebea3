"""instrument(): bad input is refused at once, and a later import is never broken by it.

The import tests run in fresh interpreters: whether a module has been imported yet is
process-wide state, and the point is what happens to a real ``import`` statement.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import switchgear as sg

# A stdlib module that importing switchgear does not import; each script checks that.
LATE = "smtplib"


PRELUDE = f"""
import json, logging, sys

records = []

class Keep(logging.Handler):
    def emit(self, record):
        records.append(record)

logging.getLogger("switchgear").addHandler(Keep())
import switchgear as sg

assert {LATE!r} not in sys.modules, "{LATE} is imported already: this test would prove nothing"
"""


def run_python(body: str) -> dict[str, Any]:
    """Run ``PRELUDE`` + ``body`` in a new interpreter; the JSON object it prints last."""
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=120,  # generous: two cores shared with other test runs
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_a_target_that_does_not_resolve_never_breaks_the_later_import() -> None:
    result = run_python(
        f"""
        sg.instrument("{LATE}:SMTP.sendmial", name="smtp-typo")  # a typo
        sg.instrument("{LATE}:SMTP.sendmial", name="smtp-typo")  # twice: reported once
        sg.instrument("{LATE}:SMTP_PORT")  # exists, but is not callable
        sg.instrument("{LATE}:SMTP.sendmail", name="smtp")  # a correct one beside them

        try:
            import {LATE}
        except BaseException as exc:
            print(json.dumps({{"import_failed": repr(exc)}}))
            raise SystemExit(0)
        print(json.dumps({{
            "import_failed": None,
            "typo_patched": hasattr({LATE}.SMTP, "sendmial"),
            "port": {LATE}.SMTP_PORT,
            "sendmail": getattr({LATE}.SMTP.sendmail, "__switchgear__", None) is not None
                and {LATE}.SMTP.sendmail.__switchgear__.name,
            "errors": [r.getMessage() for r in records if r.levelname == "ERROR"],
        }}))
        """
    )
    assert result["import_failed"] is None
    assert result["typo_patched"] is False
    assert result["port"] == 25  # left as it was
    assert result["sendmail"] == "smtp"  # the correct target is still applied
    errors = result["errors"]
    assert len(errors) == 2, errors  # one per failing target, however often instrumented
    typo, port = sorted(errors, key=lambda e: "SMTP_PORT" in e)
    assert f"'{LATE}:SMTP.sendmial'" in typo
    assert "has no attribute 'sendmial'" in typo
    assert "unpatched" in typo
    assert f"'{LATE}:SMTP_PORT'" in port
    assert "not int" in port


def test_a_target_of_an_imported_module_is_checked_at_the_call() -> None:
    result = run_python(
        f"""
        import {LATE}

        errors = {{}}
        for target in ("{LATE}:SMTP.sendmial", "{LATE}:Nope.sendmail", "{LATE}:SMTP_PORT"):
            try:
                sg.instrument(target, name="smtp")
            except Exception as exc:
                errors[target] = [type(exc).__name__, str(exc)]
        untouched = not hasattr({LATE}.SMTP.sendmail, "__switchgear__")
        # Nothing the failed calls did stands in the way of the corrected one.
        breaker = sg.CircuitBreaker("smtp", failure_threshold=2)
        sg.instrument("{LATE}:SMTP.sendmail", name="smtp", breaker=breaker)
        plan = {LATE}.SMTP.sendmail.__switchgear__
        print(json.dumps({{
            "errors": errors,
            "untouched": untouched,
            "patched": plan.breaker is breaker and plan.name == "smtp",
        }}))
        """
    )
    errors = result["errors"]
    assert errors[f"{LATE}:SMTP.sendmial"][0] == "ValueError"
    assert "'sendmial'" in errors[f"{LATE}:SMTP.sendmial"][1]
    assert errors[f"{LATE}:Nope.sendmail"][0] == "ValueError"
    assert "'Nope'" in errors[f"{LATE}:Nope.sendmail"][1]
    assert errors[f"{LATE}:SMTP_PORT"][0] == "TypeError"
    assert all("target" in message for _, message in errors.values())
    assert result["untouched"] is True
    assert result["patched"] is True


# -- options: checked at the call, whether or not the module is imported --------------------

NOT_IMPORTED = "switchgear_never_imported_module:f"


@pytest.mark.parametrize(
    ("options", "error", "option"),
    [
        ({"name": ""}, ValueError, "name"),
        ({"name": " padded"}, ValueError, "name"),
        ({"name": "x" * 201}, ValueError, "name"),
        ({"name": 5}, TypeError, "name"),
        ({"breaker": "b"}, TypeError, "breaker"),
        ({"pool": "p"}, TypeError, "pool"),
        ({"metrics": "m"}, TypeError, "metrics"),
        ({"fallback": 1}, TypeError, "fallback"),
        ({"timeout": "1"}, TypeError, "timeout"),
        ({"timeout": -1.0}, ValueError, "timeout"),
        ({"resource_arg": 5}, TypeError, "resource_arg"),
        ({"resource_arg": "engine"}, ValueError, "resource_arg"),
        ({"breaker": sg.CircuitBreaker("elsewhere")}, ValueError, "breaker"),
    ],
)
def test_each_bad_option_is_refused_at_the_call(
    options: dict[str, Any], error: type[Exception], option: str
) -> None:
    with pytest.raises(error, match=rf"\b{option}\b"):
        sg.instrument(NOT_IMPORTED, **options)
    assert NOT_IMPORTED.partition(":")[0] not in sys.modules


def test_an_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="breakr"):
        sg.instrument(NOT_IMPORTED, breakr=None)


@pytest.mark.parametrize(
    ("target", "error"),
    [(42, TypeError), (b"mod:f", TypeError), ("mod:f.", ValueError), ("mod-x:f", ValueError)],
)
def test_a_bad_target_is_refused_at_the_call(target: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="target"):
        sg.instrument(target)
