"""`kagent doctor` as a user runs it, on this machine and on machines faked by putting scripts
named nvidia-smi, nvcc and ncu first on PATH (the real probes run and parse them); and the
other commands giving the same answers (`--device cuda`, `--backend cuda`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CANDIDATES, ROOT, TASKS
from kagent.sandbox import probes, supervisor

SMI_FAILS = "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"; exit 9"
SMI_TWO_H200 = """case "$1" in
  --query-gpu=*)
    echo "0, GPU-0a1b2c3d-0000-0000-0000-000000000000, NVIDIA H200, 143771, 9.0, 570.86.15"
    echo "1, GPU-9f8e7d6c-0000-0000-0000-000000000000, NVIDIA H200, 143771, 9.0, 570.86.15" ;;
  --query-compute-apps=*) echo "GPU-9f8e7d6c-0000-0000-0000-000000000000, 4242" ;;
  *) echo "| NVIDIA-SMI 570.86.15      Driver Version: 570.86.15      CUDA Version: 12.8     |" ;;
esac"""
NVCC_12_8 = 'echo "Cuda compilation tools, release 12.8, V12.8.93"'
NCU = 'echo "NVIDIA (R) Nsight Compute Command Line Profiler"; echo "Version 2025.1.0.0 (build 35237751) (public-release)"'
GPU_TOOLS = ("nvidia-smi", "nvcc", "ncu")


def fake_path(directory: Path, **scripts: str) -> str:
    """PATH with `scripts` (name -> shell body; nvidia_smi for nvidia-smi) first, and without
    the directories that hold this machine's own GPU tools."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in scripts.items():
        path = directory / name.replace("_", "-")
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    real = [d for d in os.environ["PATH"].split(os.pathsep)
            if d and not any(os.path.exists(os.path.join(d, tool)) for tool in GPU_TOOLS)]
    return os.pathsep.join([str(directory), *real])


def user_env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_", "CUDA_"))}
    env["COLUMNS"] = "200"
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def kagent(env: dict[str, str], *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kagent.agent.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def doctor_json(env: dict[str, str]) -> dict:
    result = kagent(env, "doctor", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout[-2000:]
    report = json.loads(lines[0])
    assert {"gpu", "backends", "isolation", "timing"} <= set(report)
    assert set(report["backends"]) == {"cpp", "triton", "cuda"}
    return report


@pytest.fixture
def fresh_probes():
    """In-process probes answer once per process: forget their answers around a test."""
    cached = [probes.probe_gpu, probes.probe_torch, probes.probe_triton, probes.probe_nvcc, probes.probe_ninja,
              probes.probe_ncu]
    for probe in cached:
        probe.cache_clear()
    yield
    for probe in cached:
        probe.cache_clear()


def test_doctor_on_this_cpu_machine(tmp_path):
    env = user_env(PATH=fake_path(tmp_path / "bin"))  # this machine's PATH, less any GPU tool
    report = doctor_json(env)
    assert report["gpu"]["available"] is False and "no NVIDIA GPU" in report["gpu"]["reason"]
    cpp, triton, cuda = (report["backends"][name] for name in ("cpp", "triton", "cuda"))
    assert cpp["can_run"] and cpp["can_time"], cpp
    assert triton["can_run"] and not triton["can_time"] and "interpreter" in triton["reason"], triton
    assert not cuda["can_run"] and not cuda["can_time"], cuda
    assert report["compiler"]["works"] and report["compiler"]["openmp_threads"] >= 1
    assert report["compiler"]["simd_bits"] in (0, 128, 256, 512)
    # The sandbox's own decision, asked in this process: the doctor must say the same.
    assert report["isolation"]["namespaces"] == bool(supervisor.namespace_prefix())
    assert report["isolation"]["namespaces"] or not report["isolation"]["confined"]
    timing = report["timing"]
    assert timing["samples"] > 0 and timing["median_ms"] > 0 and 0 <= timing["other_cpu_share"] <= 1
    assert isinstance(timing["trustworthy"], bool) and timing["reason"].startswith(("quiet", "noisy"))

    human = kagent(env, "doctor")
    assert human.returncode == 0 and human.stderr == "", human.stderr[-2000:]
    rows = {line.split()[0]: line for line in human.stdout.splitlines() if line.strip()}
    assert rows["cpp"].split()[1:3] == ["yes", "yes"]
    assert rows["triton"].split()[1:3] == ["yes", "no"] and "interpreter" in rows["triton"]
    assert rows["cuda"].split()[1:3] == ["no", "no"]


def test_doctor_on_a_gpu_machine_with_a_cpu_build_of_torch(tmp_path):
    env = user_env(PATH=fake_path(tmp_path / "bin", nvidia_smi=SMI_TWO_H200, nvcc=NVCC_12_8, ncu=NCU))
    report = doctor_json(env)
    gpu = report["gpu"]
    assert gpu["available"] and [g["name"] for g in gpu["gpus"]] == ["NVIDIA H200"] * 2
    assert gpu["driver_version"] == "570.86.15" and gpu["cuda_version"] == "12.8"
    assert gpu["gpus"][0]["compute_capability"] == "9.0" and gpu["gpus"][0]["memory_mib"] == 143771
    assert gpu["other_processes"] == 1 and "1 other process(es) computing" in gpu["reason"]
    assert report["nvcc"]["version"] == "12.8" and report["ncu"]["found"] and report["ncu"]["version"] == "2025.1.0.0"
    # This machine's torch is the CPU build: the GPU is there, but nothing can run on it.
    assert report["torch"]["cuda"] is None and "CPU build" in report["torch"]["reason"]
    assert not report["gpu_ready"]["can_run"] and "CPU build" in report["gpu_ready"]["reason"]
    triton, cuda = report["backends"]["triton"], report["backends"]["cuda"]
    assert triton["can_run"] and not triton["can_time"] and "CPU build" in triton["reason"]
    assert not cuda["can_run"] and "CPU build" in cuda["reason"]

    pinned = doctor_json({**env, "CUDA_VISIBLE_DEVICES": "0"})["gpu"]
    assert [g["index"] for g in pinned["gpus"]] == [0] and pinned["other_processes"] == 0  # the busy one is hidden


def test_other_commands_give_the_doctors_answers(tmp_path):
    env = user_env(PATH=fake_path(tmp_path / "bin", nvidia_smi=SMI_TWO_H200, nvcc=NVCC_12_8))
    triton = CANDIDATES / "01_relu" / "triton.py"
    cases = {
        ("eval", TASKS / "01_relu.py", triton, "--device", "cuda"): "--device cuda: torch 2.13.0",
        ("optimize", TASKS / "01_relu.py", "--model", "cmd:true", "--backend", "cuda",
         "--runs-dir", tmp_path / "runs"): "--backend cuda cannot run here: torch",
        ("optimize", TASKS / "01_relu.py", "--model", "cmd:true", "--backend", "triton", "--device", "cuda",
         "--runs-dir", tmp_path / "runs"): "--device cuda: torch 2.13.0",
    }
    for args, expected in cases.items():
        for as_json in ([], ["--json"]):
            result = kagent(env, *args, *as_json)
            assert result.returncode == 2, (result.stdout[-500:], result.stderr[-2000:])
            if as_json:  # stdout is one JSON object whatever happens, with the same message
                key = "message" if args[0] == "eval" else "error"  # a verdict, or a run's error object
                assert len(result.stdout.splitlines()) == 1 and expected in json.loads(result.stdout)[key]
            else:
                assert result.stdout == ""
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"error: {expected}") and "CPU build" in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_a_gpu_the_driver_cannot_reach_is_no_gpu(tmp_path, monkeypatch, fresh_probes):
    monkeypatch.setenv("PATH", fake_path(tmp_path / "bin", nvidia_smi=SMI_FAILS))
    gpu = probes.probe_gpu()
    assert not gpu.available and "couldn't communicate with the NVIDIA driver" in gpu.reason
    assert not supervisor.gpu_available()


def test_cuda_visible_devices_can_hide_every_gpu(tmp_path, monkeypatch, fresh_probes):
    monkeypatch.setenv("PATH", fake_path(tmp_path / "bin", nvidia_smi=SMI_TWO_H200))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    gpu = probes.probe_gpu()
    assert not gpu.available and "hides every GPU" in gpu.reason
    probes.probe_gpu.cache_clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-9f8e7d6c")
    assert [g.index for g in probes.probe_gpu().gpus] == [1]


def test_doctor_on_a_machine_without_compiler_or_namespaces(tmp_path):
    env = user_env(PATH=fake_path(tmp_path / "bin"), CXX=str(tmp_path / "no-such-g++"), KAGENT_SANDBOX_NAMESPACES="0")
    report = doctor_json(env)
    cpp = report["backends"]["cpp"]
    assert not cpp["can_run"] and not cpp["can_time"] and "no-such-g++" in cpp["reason"], cpp
    isolation = report["isolation"]
    assert not isolation["namespaces"] and not isolation["confined"]
    assert "KAGENT_SANDBOX_NAMESPACES=0" in isolation["reason"]


@pytest.mark.parametrize("admin_only, permitted", [(1, False), (0, True)])
def test_ncu_profiling_permission(tmp_path, monkeypatch, fresh_probes, admin_only, permitted):
    monkeypatch.setenv("PATH", fake_path(tmp_path / "bin", ncu=NCU))
    params = tmp_path / "params"
    params.write_text(f"ResmanDebugLevel: 4294967295\nRmProfilingAdminOnly: {admin_only}\n")
    monkeypatch.setattr(probes, "NVIDIA_PARAMS", params)
    ncu = probes.probe_ncu(confined=True)
    assert ncu.found and ncu.profiling_permitted is permitted
    assert ("RmProfilingAdminOnly=1" in ncu.reason) is not permitted


def _probes_of_a_gpu_machine(nvcc: str | None = "12.8", matches_gpu: bool = True, triton: bool = True,
                             ninja: bool = True):
    gpu = probes.GpuProbe(available=True, reason="1 GPU(s)", driver_version="570.86.15", cuda_version="12.8",
                          gpus=[probes.Gpu(index=0, uuid="GPU-0", name="NVIDIA H200", memory_mib=143771,
                                           compute_capability="9.0")])
    torch = probes.TorchProbe(installed=True, version="2.13.0+cu128", cuda="12.8", sees_gpu=True,
                              arch_list=["sm_80", "sm_90"] if matches_gpu else ["sm_80"], matches_gpu=matches_gpu,
                              reason="torch 2.13.0+cu128" + ("" if matches_gpu else ", but carries no code for sm_90"))
    tools = (probes.ToolProbe(found=triton, version="3.7.1" if triton else None,
                              reason="triton 3.7.1" if triton else "triton is not installed"),
             probes.ToolProbe(found=nvcc is not None, version=nvcc, reason=f"nvcc {nvcc}" if nvcc else "nvcc not found"))
    ninja_probe = probes.ToolProbe(found=ninja, reason="ninja 1.11.1" if ninja else "ninja not on PATH: load_inline ...")
    ready = probes.gpu_ready(gpu, torch)
    return {name: probes.backend_support(name, ready, *tools, torch, ninja=ninja_probe) for name in ("triton", "cuda")}


def test_backends_on_a_usable_gpu():
    answers = _probes_of_a_gpu_machine()
    assert all(a.can_run and a.can_time for a in answers.values()), answers
    cuda = _probes_of_a_gpu_machine(nvcc="13.0")["cuda"]
    assert not cuda.can_run and "major version" in cuda.reason
    cuda = _probes_of_a_gpu_machine(nvcc=None)["cuda"]
    assert not cuda.can_run and "nvcc not found" in cuda.reason
    cuda = _probes_of_a_gpu_machine(ninja=False)["cuda"]
    assert not cuda.can_run and cuda.reason.startswith("ninja not on PATH")
    no_code = _probes_of_a_gpu_machine(matches_gpu=False)
    assert not no_code["cuda"].can_run and "no code for sm_90" in no_code["cuda"].reason
    assert no_code["triton"].can_run and not no_code["triton"].can_time and "interpreter" in no_code["triton"].reason
    assert not _probes_of_a_gpu_machine(triton=False)["triton"].can_run


def test_timing_probe_sees_other_processes_load():
    hog = "import time\nend = time.monotonic() + 4\nwhile time.monotonic() < end: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(os.cpu_count() or 1)]
    try:
        noise = probes.measure_noise(1.0)
    finally:
        for proc in hogs:
            proc.kill()
            proc.wait()
    assert noise.samples > 0 and noise.other_cpu_share > probes.OTHER_CPU_LIMIT, noise
    assert not noise.trustworthy and noise.reason.startswith("noisy")


def test_visible_gpus_are_the_ones_nvidia_smi_lists(tmp_path, monkeypatch, fresh_probes):
    from kagent.agent.executors.local import LocalExecutor

    monkeypatch.setenv("PATH", fake_path(tmp_path / "bin", nvidia_smi=SMI_TWO_H200))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    uuids = [g.uuid for g in probes.probe_gpu().gpus]
    assert len(uuids) == 2 and supervisor.visible_gpus() == uuids
    assert [s.gpu for s in LocalExecutor("cuda", None, tmp_path).sandboxes] == uuids  # started lazily: no GPU needed


# -- bench/gpu_check.sh -----------------------------------------------------------------------


def gpu_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "bench" / "gpu_check.sh")], env={**env, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=600)


def load_gpu_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_without_a_gpu_says_so_and_exits_0(tmp_path):
    result = gpu_check(user_env(PATH=fake_path(tmp_path / "bin")))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["no GPU to check: no NVIDIA GPU found on this machine (no nvidia-smi on PATH)"]


def test_gpu_check_on_a_gpu_torch_cannot_use_fails_every_path(tmp_path):
    result = gpu_check(user_env(PATH=fake_path(tmp_path / "bin", nvidia_smi=SMI_TWO_H200)))
    assert result.returncode == 1, result.stderr[-2000:]
    rows = [line.split(None, 3) for line in result.stdout.splitlines()[3:]]
    assert [row[0] for row in rows] == list(load_gpu_check().PATHS)
    for path, verdict, seconds, error in rows:
        assert verdict == "FAIL" and error.startswith("not run: torch 2.13.0") and "CPU build" in error, (path, error)


def test_gpu_check_table():
    gpu_check_module = load_gpu_check()

    def fails():
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nsecond line")

    def wrong():
        assert False, "01_relu: incorrect (mismatch) max abs error 3\nmore"

    checks = [("passes", lambda: None), ("fails", fails), ("wrong", wrong), ("slow", lambda: time.sleep(0.3)),
              ("late", lambda: None)]
    said: list[str] = []
    rows = gpu_check_module.run_checks(checks, budget_s=0.2, say=said.append)
    assert [(r.path, r.ok) for r in rows] == [("passes", True), ("fails", False), ("wrong", False), ("slow", True),
                                              ("late", False)]
    assert rows[1].error == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert rows[2].error == "01_relu: incorrect (mismatch) max abs error 3"
    assert rows[4].error == "not run: the 0.2 s budget was spent" and rows[4].seconds == 0
    assert rows[3].seconds >= 0.3 and said[1] == "fails: FAIL RuntimeError: CUDA error: an illegal memory access was encountered"
    lines = gpu_check_module.format_table(rows).splitlines()
    assert lines[0].split() == ["path", "result", "seconds", "first", "error"] and len(lines) == 2 + len(rows)
    assert lines[3].split(None, 3) == ["fails", "FAIL", f"{rows[1].seconds:.1f}", rows[1].error]
    assert lines[2].split() == ["passes", "PASS", f"{rows[0].seconds:.1f}"]


def test_deep_torch_probe_of_a_torch_that_does_not_see_the_gpu(tmp_path, monkeypatch, fresh_probes):
    # A CUDA build on a GPU nvidia-smi lists: the deep probe really imports this machine's torch,
    # which finds no GPU, and says so.
    monkeypatch.setenv("PATH", fake_path(tmp_path / "bin", nvidia_smi=SMI_TWO_H200))
    monkeypatch.setattr(probes, "_torch_build", lambda: {"__version__": "2.13.0+cu128", "cuda": "12.8"})
    assert probes.probe_torch().matches_gpu is None  # the cheap probe does not ask
    torch = probes.probe_torch(deep=True)
    assert torch.sees_gpu is False and torch.matches_gpu is False and "does not see the GPU" in torch.reason
    assert not probes.gpu_ready(probes.probe_gpu(), torch).can_run


def test_deep_torch_probe_says_why_cuda_failed(tmp_path, monkeypatch, fresh_probes):
    # torch's own warning on stderr, its answer on stdout, as a CUDA torch on a too-old driver gives them.
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho '/venv/torch/cuda/__init__.py:180: UserWarning: CUDA initialization: The NVIDIA "
                      "driver on your system is too old (found version 11040).' >&2\necho '[false, [], \"12.8\"]'\n")
    python.chmod(0o755)
    monkeypatch.setenv("PATH", fake_path(tmp_path / "bin", nvidia_smi=SMI_TWO_H200))
    monkeypatch.setattr(probes, "_torch_build", lambda: {"__version__": "2.13.0+cu128", "cuda": "12.8"})
    monkeypatch.setattr(sys, "executable", str(python))
    torch = probes.probe_torch(deep=True)
    assert torch.sees_gpu is False and "does not see the GPU" in torch.reason
    assert torch.reason.endswith("CUDA initialization: The NVIDIA driver on your system is too old (found version 11040).")


@pytest.mark.parametrize("arch_list, fits", [(["sm_80", "sm_90"], True), (["sm_80", "sm_90a"], True),
                                             (["sm_80", "compute_80"], True), (["sm_80", "sm_86"], False),
                                             (["sm_100", "compute_100"], False), (["sm_120f"], False)])
def test_torch_carries_code_for_sm90(arch_list, fits):
    assert probes.carries_code_for(arch_list, "90") is fits


def test_doctor_on_a_usable_gpu_busy_with_another_process(tmp_path, monkeypatch, fresh_probes):
    from kagent.agent.doctor import doctor

    monkeypatch.setenv("PATH", fake_path(tmp_path / "bin", nvidia_smi=SMI_TWO_H200, nvcc=NVCC_12_8, ncu=NCU,
                                         ninja='echo "1.11.1"'))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(probes, "probe_torch", lambda deep=False: probes.TorchProbe(
        installed=True, version="2.13.0+cu128", cuda="12.8", sees_gpu=deep or None, arch_list=["sm_90"],
        matches_gpu=True if deep else None, reason="torch 2.13.0+cu128 built with CUDA 12.8"))
    report = doctor(noise_s=0.2)
    assert report.gpu_ready.can_run and "NVIDIA H200" in report.gpu_ready.reason
    assert all(a.can_run and a.can_time for a in report.backends.values()), report.backends
    assert report.ninja.version == "1.11.1" and report.nvcc.version == "12.8"
    assert not report.timing.trustworthy and report.timing.reason.endswith("1 other process(es) computing on the GPU")
