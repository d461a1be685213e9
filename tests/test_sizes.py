"""KernelBench tasks as they are (sandbox/sizes.py): GPU-sized tasks shrink to a CPU budget,
batch first, without touching operation-defining constants; shape variants change only what
the model does not depend on."""

import textwrap
from pathlib import Path

import pytest

from kagent.sandbox import sizes
from kagent.errors import TaskError

KB = Path(__file__).resolve().parent / "kernelbench"
MB = 1 << 20


def test_size_constants_are_the_scalable_ints():
    assert sizes.size_constants(KB / "level1_scaled_sum_buffer.py") == {"batch_size": 256, "features": 1048576}
    # floats and small operation constants are not sizes
    assert sizes.size_constants(KB / "level2_gemm_scale_relu.py") == {
        "batch_size": 1024, "in_features": 8192, "out_features": 8192}


@pytest.mark.parametrize("task_file", ["level1_softmax_wide.py", "level2_gemm_scale_relu.py", "level1_scaled_sum_buffer.py"])
def test_gpu_sized_tasks_shrink_to_the_budget(task_file):
    path = KB / task_file
    declared = sizes.size_constants(path)
    assert sizes.footprint_bytes(path) > 256 * MB
    scaled = sizes.shrink(path, 256 * MB)
    assert scaled and set(scaled) <= set(declared)
    assert all(scaled[n] < declared[n] for n in scaled)
    assert sizes.footprint_bytes(path, scaled) <= 256 * MB


def test_values_derived_at_import_follow_the_sizes(tmp_path):
    """`input_shape = (num_classes,)` is computed when the file runs: sizes are set in the
    source, so it follows."""
    path = tmp_path / "task.py"
    path.write_text(textwrap.dedent("""
        import torch
        class Model(torch.nn.Module):
            def forward(self, x):
                return torch.softmax(x, dim=1)
        batch_size = 32768
        num_classes = 4096
        input_shape = (num_classes,)
        def get_inputs():
            return [torch.rand(batch_size, *input_shape)]
        def get_init_inputs():
            return []
    """))
    module = sizes.load_sized(path, {"num_classes": 100, "batch_size": 3})
    assert module.input_shape == (100,) and module.get_inputs()[0].shape == (3, 100)


def test_batch_shrinks_first_and_not_below_its_floor_while_others_can():
    assert sizes.shrink(KB / "level1_softmax_wide.py", 256 * MB) == {"batch_size": 64}  # 64 x 393216 x 4 B x 2 = 192 MiB
    scaled = sizes.shrink(KB / "level2_gemm_scale_relu.py", 256 * MB)
    assert scaled["batch_size"] == sizes.BATCH_FLOOR and "in_features" in scaled


def test_a_task_that_fits_is_not_shrunk():
    assert sizes.shrink(KB / "level1_softmax_wide.py", 64 * 1024 * MB) == {}


def _task(tmp_path, body: str) -> Path:
    path = tmp_path / "task.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_shape_constraint_keeps_its_constant(tmp_path):
    """`dim` must stay 4096 (the forward checks it): shrinking skips it and halves the rest."""
    task = _task(tmp_path, """
        import torch
        class Model(torch.nn.Module):
            def forward(self, x):
                assert x.shape[-1] == 4096
                return x * 2
        batch_size = 64
        rows = 4096
        dim = 4096
        def get_inputs():
            return [torch.randn(batch_size, rows, dim)]
        def get_init_inputs():
            return []
    """)
    scaled = sizes.shrink(task, 64 * MB)
    assert "dim" not in scaled and scaled["batch_size"] < 64
    assert sizes.footprint_bytes(task, scaled) <= 64 * MB


def test_a_task_that_cannot_shrink_is_one_clear_error(tmp_path):
    task = _task(tmp_path, """
        import torch
        class Model(torch.nn.Module):
            def forward(self, x):
                return x + 1
        def get_inputs():
            return [torch.randn(8192, 8192)]
        def get_init_inputs():
            return []
    """)
    with pytest.raises(TaskError, match=r"needs 512 MB per call .* over the 64 MB limit"):
        sizes.shrink(task, 64 * MB)


def test_variant_changes_only_what_the_model_does_not_depend_on():
    gemm = KB / "level2_gemm_scale_relu.py"
    shrunk = sizes.shrink(gemm, 256 * MB)
    # in_features and out_features build the weights: only the batch may vary
    assert sizes.variant(gemm, shrunk) == {**sizes.size_constants(gemm), **shrunk, "batch_size": sizes.BATCH_FLOOR + 1}
    wide = sizes.variant(KB / "level1_softmax_wide.py", {"batch_size": 64})
    assert wide == {"batch_size": 65, "dim": 393217}  # odd, and larger: a kernel that hard-codes 64 rows stays in bounds


def test_no_variant_without_size_constants(tmp_path):
    task = _task(tmp_path, """
        import torch
        class Model(torch.nn.Module):
            def forward(self, x):
                return x + 1
        def get_inputs():
            return [torch.randn(4, 4)]
        def get_init_inputs():
            return []
    """)
    assert sizes.variant(task) is None
