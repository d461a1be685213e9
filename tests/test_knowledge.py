"""The Coder's knowledge base (prompts/knowledge/): every guide exists for every backend, is
short and concrete, and the ops a task's reference really runs pick the right guides."""

import re
from pathlib import Path

import pytest
import torch

from kagent.agent.knowledge import _index, classes_for, guide, guides_for
from kagent.sandbox.backends import BACKENDS
from kagent.sandbox.task import build_model, init_inputs, input_sets, load_task
from kagent.sandbox.trace import compute_ops

ROOT = Path(__file__).resolve().parent.parent


def traced(task_file: str) -> list[str]:
    task = load_task(ROOT / "tasks" / task_file)
    model = build_model(task, task.Model, init_inputs(task), 0, torch.device("cpu"))
    inputs = next(iter(input_sets(task, [0], torch.device("cpu")).values()))
    return compute_ops(model, *inputs)


@pytest.mark.parametrize("task_file, expected", [
    ("01_relu.py", ["elementwise"]),
    ("03_sum_dim.py", ["reduction"]),
    ("04_softmax.py", ["softmax"]),
    ("05_layernorm.py", ["normalization"]),
    ("06_matmul.py", ["gemm"]),
    ("07_conv2d.py", ["convolution"]),
    ("08_linear_bias_relu.py", ["elementwise", "gemm"]),
    ("12_cross_entropy.py", ["softmax"]),
])
def test_the_reference_ops_choose_the_guides(task_file, expected):
    assert classes_for(traced(task_file)) == expected


def test_pooling_scan_and_attention_are_recognised():
    pool = compute_ops(torch.nn.MaxPool2d(2), torch.randn(1, 2, 4, 4))
    scan = compute_ops(lambda x: x.cumsum(1), torch.randn(2, 3))
    attention = compute_ops(torch.nn.functional.scaled_dot_product_attention, *[torch.randn(1, 2, 4, 8)] * 3)
    assert (classes_for(pool), classes_for(scan), classes_for(attention)) == (["pooling"], ["scan"], ["attention"])


def test_unknown_ops_fall_back_to_elementwise_and_no_ops_to_nothing():
    assert classes_for(["some_new_pointwise_op"]) == ["elementwise"]
    assert classes_for([]) == []


def test_index_names_real_aten_ops():
    """A typo in index.toml would silently never match."""
    unknown = [op for entry in _index().values() for op in entry["ops"] if not hasattr(torch.ops.aten, op)]
    assert not unknown


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_class_has_a_short_concrete_guide_per_backend(backend):
    for key in _index():
        text = guide(key, backend).text
        words = len(text.split())
        assert 40 < words < 450, f"{key}/{backend}: {words} words"
        assert re.search(r"\d", text), f"{key}/{backend} states no numbers"
        assert "\n## " not in text  # one backend's section, not the others'


def test_a_missing_backend_section_is_an_error(tmp_path, monkeypatch):
    from kagent.agent import knowledge
    from kagent.errors import KagentError

    (tmp_path / "index.toml").write_text('[toy]\ntitle = "Toy"\nops = ["relu"]\n')
    (tmp_path / "toy.md").write_text("Intro.\n\n## cpp\nUse 8 lanes.\n")
    monkeypatch.setattr(knowledge, "_folder", lambda: tmp_path)
    knowledge._index.cache_clear(), knowledge.guide.cache_clear()
    try:
        assert guides_for(["relu"], "cpp")[0].text == "Intro.\n\nUse 8 lanes."
        with pytest.raises(KagentError, match="no '## triton' section"):
            guide("toy", "triton")
    finally:
        knowledge._index.cache_clear(), knowledge.guide.cache_clear()


def test_the_coder_sees_its_guides_and_the_runs_history(improve_runs):
    """Through `kagent optimize` with the scripted model (conftest.py's improve_runs: 3
    candidates): every Coder prompt carries the guide for the task's ops (ReLU: element-wise,
    nothing else), and the prompts after the first list the earlier candidates with their idea
    and outcome."""
    import json

    from conftest import archive_rows

    run_dir = improve_runs[1][0]["run_dir"]
    prompts = [json.loads(m)[-1]["content"] for (m,) in archive_rows(
        run_dir, "SELECT messages_json FROM llm_calls WHERE role = 'coder' ORDER BY id")]
    assert len(prompts) == 3
    for prompt in prompts:
        assert "## Element-wise ops and fusion" in prompt and "## Reductions" not in prompt
        assert "#pragma omp parallel for simd" in prompt  # the cpp section, not triton's
    first_history = prompts[0].split("# What this run already tried")[1]
    assert "nothing yet" in first_history
    # scripted_model's first draft says "A first, simple version:" and is correct but slow.
    later_history = prompts[2].split("# What this run already tried")[1]
    assert "- #1: A first, simple version: → correct" in later_history and "x vs eager" in later_history
