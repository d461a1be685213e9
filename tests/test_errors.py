"""The one error codec every process boundary uses (kagent/errors.py: ErrorMessage)."""

import json

import pytest
from pydantic import ValidationError

from kagent import errors


@pytest.mark.parametrize("cls", [errors.UsageError, errors.TaskError, errors.TaskTooLarge, errors.CandidateError,
                                 errors.SandboxError, errors.ConfigError, errors.ProviderError])
def test_every_error_crosses_a_boundary_as_itself(cls):
    wire = json.loads(json.dumps(errors.ErrorMessage.of(cls("tasks/x.py: no class Model")).model_dump()))
    back = errors.ErrorMessage.model_validate(wire).to_error()
    assert type(back) is cls and str(back) == "tasks/x.py: no class Model"
    assert back.exit_code == cls.exit_code


def test_a_compile_error_keeps_its_log():
    back = errors.ErrorMessage.model_validate_json(errors.ErrorMessage.of(errors.CompileError("g++ failed", "x.cpp:3: error")).model_dump_json()).to_error()
    assert isinstance(back, errors.CompileError) and back.log == "x.cpp:3: error"


@pytest.mark.parametrize("payload", [
    {"error": "SystemExit", "message": "not one of kagent's"},  # a forged class name
    {"error": "one_line", "message": "a function, not a class"},
])
def test_a_forged_error_class_is_a_sandbox_error(payload):
    assert type(errors.ErrorMessage.model_validate(payload).to_error()) is errors.SandboxError


@pytest.mark.parametrize("payload", [
    {"error": "TaskError", "message": {"not": "text"}},  # a malformed message
    {"message": "no class name"},
])
def test_a_malformed_error_does_not_validate(payload):
    """Each receiver validates the whole message and answers a failure as its own (messages.py)."""
    with pytest.raises(ValidationError):
        errors.ErrorMessage.model_validate(payload)


def test_an_unexpected_exception_is_kagents_failure():
    message = errors.ErrorMessage.of(ZeroDivisionError("division by zero"))
    assert type(message.to_error()) is errors.SandboxError and "ZeroDivisionError" in message.message
