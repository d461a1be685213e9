"""Task files: every way one can be broken is a TaskError of one line that names the file (and
the line, where there is one), raised in the parent even when the worker found it; and a valid
task's input sets are what the harness promises (fresh per seed, named extras, a shifted set)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from conftest import CANDIDATES, TASKS
from kagent.errors import SandboxError, TaskError
from kagent.sandbox.task import DISTRIBUTION_SHIFT, build_model, init_inputs, input_sets, load_task

CPU = torch.device("cpu")
HONEST = CANDIDATES / "01_relu" / "cpp.py"

VALID = """
import torch

class Model(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x)

def get_inputs():
    return [torch.randn(8, 16)]

def get_init_inputs():
    return []
"""


def write(tmp_path: Path, source: str, name: str = "task.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def valid_with(**replacements: str) -> str:
    """VALID with whole definitions swapped: {"get_inputs": "def get_inputs(): ..."}."""
    source = VALID
    for name, new in replacements.items():
        start = source.index(f"def {name}(") if name != "Model" else source.index("class Model")
        end = source.find("\n\n", start)
        source = source[:start] + textwrap.dedent(new).strip() + (source[end:] if end != -1 else "\n")
    return source


def task_error(fn, *args) -> str:
    with pytest.raises(TaskError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message.strip(), f"not one line: {message!r}"
    assert "Traceback" not in message
    return message


def sets_of(path: Path, seeds=(3, 4, 5)) -> dict[str, list[torch.Tensor]]:
    return dict(input_sets(load_task(path), list(seeds), CPU))  # drawn lazily: draw them all


# -- load_task ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.py"
    message = task_error(load_task, path)
    assert str(path) in message and "not found" in message


def test_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, VALID.replace("def get_inputs():", "def get_inputs(:"))
    message = task_error(load_task, path)
    line = VALID.lstrip().splitlines().index("def get_inputs():") + 1
    assert str(path) in message and f"syntax error at line {line}" in message


def test_import_error_names_the_line(tmp_path):
    path = write(tmp_path, VALID + "\nraise ValueError('bad config')\n")
    message = task_error(load_task, path)
    assert str(path) in message and "ValueError: bad config" in message
    assert f"line {len(path.read_text().splitlines())}" in message


@pytest.mark.parametrize("missing", ["Model", "get_inputs", "get_init_inputs"])
def test_missing_definition(tmp_path, missing):
    path = write(tmp_path, valid_with(**{missing: "pass"}))
    message = task_error(load_task, path)
    assert str(path) in message and f"missing {missing}" in message


def test_model_not_a_module(tmp_path):
    path = write(tmp_path, valid_with(Model="class Model:\n    pass"))
    message = task_error(load_task, path)
    assert str(path) in message and "torch.nn.Module" in message


def test_hook_not_callable(tmp_path):
    path = write(tmp_path, VALID.replace("def get_init_inputs():\n    return []", "get_init_inputs = []"))
    message = task_error(load_task, path)
    assert str(path) in message and "get_init_inputs must be a function" in message


def test_valid_task_loads(tmp_path):
    task = load_task(write(tmp_path, VALID))
    assert task.name == "task" and task.get_extra_inputs is None


# -- input sets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs, expected", [
    ("[None, 2]", "input 0 is a NoneType, not a tensor, int, float or bool"),
    ("[torch.randn(3), 'x']", "input 1 is a str, not a tensor"),
    ("[]", "must return a non-empty list of tensors"),
    ("torch.randn(3)", "must return a non-empty list of tensors"),
])
def test_inputs_that_are_not_tensors(tmp_path, inputs, expected):
    path = write(tmp_path, valid_with(get_inputs=f"def get_inputs():\n    return {inputs}"))
    message = task_error(sets_of, path)
    assert str(path) in message and "get_inputs()" in message and expected in message


def test_get_inputs_raises(tmp_path):
    path = write(tmp_path, valid_with(get_inputs="def get_inputs():\n    return [torch.randn(-1)]"))
    message = task_error(sets_of, path)
    line = path.read_text().splitlines().index("    return [torch.randn(-1)]") + 1
    assert str(path) in message and f"line {line}: get_inputs() raised RuntimeError" in message


def test_get_init_inputs_not_a_list(tmp_path):
    path = write(tmp_path, valid_with(get_init_inputs="def get_init_inputs():\n    return 3"))
    message = task_error(init_inputs, load_task(path))
    assert str(path) in message and "get_init_inputs() must return a list" in message


def test_model_constructor_raises(tmp_path):
    source = valid_with(Model="""
        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                raise ValueError("no weights")
        """)
    path = write(tmp_path, source)
    task = load_task(path)
    message = task_error(build_model, task, task.Model, [], 0, CPU)
    assert str(path) in message and "line 6" in message and "ValueError: no weights" in message


@pytest.mark.parametrize("extra, expected", [
    ("[torch.randn(3)]", "get_extra_inputs() must return a dict"),
    ("{'odd': ['5']}", "get_extra_inputs()['odd'] input 0 is a str, not a tensor"),
    ("{'odd': []}", "get_extra_inputs()['odd'] must return a non-empty list"),
])
def test_extra_inputs_malformed(tmp_path, extra, expected):
    path = write(tmp_path, VALID + f"\ndef get_extra_inputs():\n    return {extra}\n")
    message = task_error(sets_of, path)
    assert str(path) in message and expected in message


def test_valid_input_sets():
    task = load_task(TASKS / "01_relu.py")
    seeds = [11, 12, 13]
    sets = input_sets(task, seeds, CPU)
    shift_name, scale, shift = DISTRIBUTION_SHIFT
    assert list(sets) == [f"seed:{s}" for s in seeds] + [
        "extra:odd_shape", "extra:edge_values", "extra:single_element", shift_name]
    primary = [sets[f"seed:{s}"][0] for s in seeds]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.equal(primary[i], primary[j]), f"seeds {seeds[i]} and {seeds[j]} drew the same inputs"
    assert all(x.shape == primary[0].shape for x in primary)
    # The same seed draws the same inputs: a verdict can be reproduced.
    assert torch.equal(input_sets(task, seeds, CPU)["seed:11"][0], primary[0])
    assert sets["extra:odd_shape"][0].shape == (7, 1001)
    assert torch.equal(sets[shift_name][0], primary[0] * scale + shift)
    assert sets[shift_name][0].mean() > shift / 2  # really moved away from zero


def test_shifted_set_leaves_integer_inputs_alone(tmp_path):
    path = write(tmp_path, valid_with(get_inputs="def get_inputs():\n    return [torch.randn(4), torch.arange(4)]"))
    sets = sets_of(path)
    shifted = sets[DISTRIBUTION_SHIFT[0]]
    assert torch.equal(shifted[1], torch.arange(4))
    assert not torch.equal(shifted[0], sets["seed:3"][0])


# -- through the sandbox: the worker's TaskError becomes the parent's ----------------------------


@pytest.mark.parametrize("broken, expected", [
    ("""
    import torch

    class Model(torch.nn.Module):
        def forward(self, x):
            return x.view(3, -1)  # never fits

    def get_inputs():
        return [torch.randn(8, 16)]

    def get_init_inputs():
        return []
    """, "line 5: Model.forward raised RuntimeError"),
    (valid_with(get_inputs="def get_inputs():\n    return [torch.randn(2), {7}]"),
     "get_inputs() input 1 is a set, not a tensor"),
    (valid_with(Model="""
        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                raise ValueError("no weights")
        """), "line 6: Model(*get_init_inputs()) raised ValueError: no weights"),
    (VALID + "\ndef get_extra_inputs():\n    return [torch.randn(3)]\n", "get_extra_inputs() must return a dict"),
    ("import torch\nclass Model(torch.nn.Module:\n    pass\n", "syntax error at line 2"),
], ids=["forward_raises", "input_not_tensor", "constructor_raises", "extra_not_dict", "syntax_error"])
def test_task_errors_through_the_sandbox(evaluate, tmp_path, broken, expected):
    path = write(tmp_path, broken)
    with pytest.raises(TaskError) as info:
        evaluate(path, HONEST)
    message = str(info.value)
    assert not isinstance(info.value, SandboxError)
    assert str(path) in message and expected in message, message
    assert "\n" not in message.strip() and "Traceback" not in message
