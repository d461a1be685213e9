"""The one error codec every process boundary uses (kagent/errors.py: ErrorMessage)."""

import json

import pytest

from kagent import errors


@pytest.mark.parametrize("cls", [errors.UsageError, errors.TaskError, errors.TaskTooLarge, errors.CandidateError,
                                 errors.SandboxError, errors.ConfigError, errors.ProviderError])
def test_every_error_crosses_a_boundary_as_itself(cls):
    wire = json.loads(json.dumps(errors.ErrorMessage.of(cls("tasks/x.py: no class Model")).model_dump()))
    back = errors.decode_error(wire)
    assert type(back) is cls and str(back) == "tasks/x.py: no class Model"
    assert back.exit_code == cls.exit_code


def test_a_compile_error_keeps_its_log():
    back = errors.decode_error(errors.ErrorMessage.of(errors.CompileError("g++ failed", "x.cpp:3: error")).model_dump())
    assert isinstance(back, errors.CompileError) and back.log == "x.cpp:3: error"


@pytest.mark.parametrize("payload", [
    {"error": "SystemExit", "message": "not one of kagent's"},  # a forged class name
    {"error": "one_line", "message": "a function, not a class"},
    {"error": "TaskError", "message": {"not": "text"}},  # a malformed message
    {"message": "no class name"},
])
def test_a_forged_or_malformed_error_is_a_sandbox_error(payload):
    assert type(errors.decode_error(payload)) is errors.SandboxError


def test_an_unexpected_exception_is_kagents_failure():
    message = errors.ErrorMessage.of(ZeroDivisionError("division by zero"))
    assert type(message.to_error()) is errors.SandboxError and "ZeroDivisionError" in message.message
