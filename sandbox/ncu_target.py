"""The process `ncu` profiles: one forward of a candidate on the GPU, nothing else.

    python -m kagent.sandbox.ncu_target TASK CANDIDATE
"""

import sys

import torch

from kagent.sandbox.task import build_model, init_inputs, input_sets, load_module, load_task


def main() -> None:
    """Run one forward of CANDIDATE's ModelNew on the GPU for ncu to profile (argv: TASK CANDIDATE)."""
    task_path, candidate_path = sys.argv[1:3]
    device = torch.device("cuda")
    task = load_task(task_path)
    init = init_inputs(task)
    inputs = next(iter(input_sets(task, [0], device).values()))
    model = build_model(task, load_module(candidate_path, "kagent_candidate").ModelNew, init, 0, device)
    with torch.no_grad():
        model(*inputs)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
