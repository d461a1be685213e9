"""Machine probes: what this machine can do for kagent, each a small function returning one
pydantic model. `kagent doctor` (agent/doctor.py) shows them all; the command line takes its
defaults and its errors from the same ones (`gpu_ready`, `backend_support`), so the two never
disagree.

The cheap probes (nvidia-smi, torch's generated version file, `nvcc --version`) import no torch
and initialise no CUDA, as the sandbox's parent process must not; they are cached per process.
Only `probe_torch(deep=True)`, which the doctor runs where there is a GPU, imports torch.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

from pydantic import BaseModel

SUBPROCESS_TIMEOUT_S = 30.0
# RmProfilingAdminOnly: 1 means only CAP_SYS_ADMIN may read GPU performance counters (NVIDIA's
# ERR_NVGPUCTRPERM page); the confined worker has no capabilities at all.
NVIDIA_PARAMS = Path("/proc/driver/nvidia/params")


def _run(command: list[str], timeout: float = SUBPROCESS_TIMEOUT_S, **kwargs) -> tuple[int, str]:
    """(exit code, stdout and stderr together); 127 with the reason where it could not run."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    except (OSError, subprocess.TimeoutExpired) as err:
        return 127, str(err)
    return proc.returncode, proc.stdout + proc.stderr


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")


# -- the GPU ------------------------------------------------------------------------------------


class Gpu(BaseModel):
    """One GPU as nvidia-smi lists it (memory in MiB)."""

    index: int
    uuid: str
    name: str
    memory_mib: int | None
    compute_capability: str | None  # "9.0"


class GpuProbe(BaseModel):
    """NVIDIA GPUs as `nvidia-smi` lists them, limited to CUDA_VISIBLE_DEVICES where set."""

    available: bool
    reason: str  # one line: the GPUs, or why there are none
    driver_version: str | None = None
    cuda_version: str | None = None  # the newest CUDA the driver supports (nvidia-smi's header)
    gpus: list[Gpu] = []
    other_processes: int = 0  # processes computing on these GPUs now: they disturb GPU timings


@cache
def probe_gpu() -> GpuProbe:
    """Asks `nvidia-smi` (which talks to the driver through the device nodes): a GPU it lists is
    one the driver works with. Never imports torch."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return GpuProbe(available=False, reason="no NVIDIA GPU found on this machine (no nvidia-smi on PATH)")
    code, out = _run([smi, "--query-gpu=index,uuid,name,memory.total,compute_cap,driver_version",
                      "--format=csv,noheader,nounits"])
    if code != 0:
        return GpuProbe(available=False, reason=f"no NVIDIA GPU found on this machine (nvidia-smi: {_first_line(out)})")
    gpus, driver = [], None
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 6 or not fields[0].isdigit():
            continue
        index, uuid, name, memory, capability, driver = fields
        gpus.append(Gpu(index=int(index), uuid=uuid, name=name, memory_mib=int(memory) if memory.isdigit() else None,
                        compute_capability=capability if re.fullmatch(r"\d+\.\d+", capability) else None))
    _, header = _run([smi])
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
    probe = GpuProbe(available=bool(gpus), reason="", driver_version=driver, cuda_version=cuda.group(1) if cuda else None)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        wanted = [v.strip() for v in visible.split(",") if v.strip()]
        gpus = [g for g in gpus if any(w == str(g.index) or (len(w) > 4 and g.uuid.startswith(w)) for w in wanted)]
        if not gpus:
            return probe.model_copy(update={"available": False, "reason": f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"})
    if not gpus:
        return probe.model_copy(update={"reason": "no NVIDIA GPU found on this machine (nvidia-smi lists none)"})
    names = ", ".join(f"{g.name} (sm_{(g.compute_capability or '?').replace('.', '')})" for g in gpus)
    _, apps = _run([smi, "--query-compute-apps=gpu_uuid,pid", "--format=csv,noheader"])
    others = sum(1 for line in apps.splitlines() if any(line.strip().startswith(g.uuid) for g in gpus))
    busy = f"; {others} other process(es) computing on them" if others else ""
    return probe.model_copy(update={"gpus": gpus, "other_processes": others, "reason": f"{len(gpus)} GPU(s): {names}{busy}"})


# -- torch and Triton ---------------------------------------------------------------------------


class TorchProbe(BaseModel):
    """The installed torch: its version, the CUDA it was built with, and (deep probe, where there
    is a GPU) whether it can use that GPU."""

    installed: bool
    version: str | None = None
    cuda: str | None = None  # torch.version.cuda: None for a CPU build
    triton_pin: str | None = None  # the Triton version the torch wheel requires, if it names one
    sees_gpu: bool | None = None  # torch.cuda.is_available() (None: not checked)
    arch_list: list[str] = []  # torch.cuda.get_arch_list(): the GPU code the wheel carries
    matches_gpu: bool | None = None  # None: not checked (no GPU, or not the deep probe)
    reason: str


def _torch_build() -> dict[str, object]:
    """`__version__` and `cuda` from torch/version.py (generated at build time; torch.version
    reads it) without importing torch: a torch import costs seconds and must not happen in the
    sandbox's parent process."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return {}
    values: dict[str, object] = {}
    tree = ast.parse(Path(spec.origin).with_name("version.py").read_text())
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            values[target.id] = value.value
    return values


def _triton_pin() -> str | None:
    for requirement in importlib.metadata.requires("torch") or []:
        match = re.match(r"\s*(?:triton|pytorch-triton)\s*==\s*([\w.+]+)", requirement)
        if match:
            return match.group(1)
    return None


def carries_code_for(arch_list: list[str], capability: str) -> bool:
    """Whether a torch with this arch list runs on a GPU of compute capability `capability`
    ("90"): machine code for exactly that one (sm_90, sm_90a), or PTX for it or an older one
    (compute_80), which the driver compiles at load time."""
    archs = [m.groups() for m in (re.fullmatch(r"(sm|compute)_(\d+)[a-z]?", a) for a in arch_list) if m]
    return any((kind == "sm" and number == capability) or (kind == "compute" and int(number) <= int(capability))
               for kind, number in archs)


@cache
def probe_torch(deep: bool = False) -> TorchProbe:
    """The build facts cost milliseconds. `deep` also imports torch and initialises CUDA to ask
    whether torch sees the GPU and carries code for its compute capability (sm_XY in the arch
    list, or PTX for XY or older, which the driver compiles)."""
    try:
        build = _torch_build()
    except (OSError, SyntaxError) as err:
        return TorchProbe(installed=False, reason=f"torch cannot be read: {err}")
    if not build:
        return TorchProbe(installed=False, reason="torch is not installed (README: Install)")
    try:
        pin = _triton_pin()
    except importlib.metadata.PackageNotFoundError:
        pin = None
    probe = TorchProbe(installed=True, version=str(build.get("__version__")), cuda=build.get("cuda"), triton_pin=pin,
                       reason="")
    if probe.cuda is None:
        return probe.model_copy(update={"reason": f"torch {probe.version} is a CPU build: install the CUDA build of torch "
                                                  "to use a GPU (README: Install)"})
    probe.reason = f"torch {probe.version} built with CUDA {probe.cuda}"
    gpu = probe_gpu()
    if not deep or not gpu.available:
        return probe
    code, out = _run([sys.executable, "-c", "import json, torch; ok = torch.cuda.is_available(); print(json.dumps("
                      "[ok, torch.cuda.get_arch_list() if ok else [], torch.version.cuda]))"], timeout=120)
    lines = out.strip().splitlines()  # the answer, and on stderr torch's warnings (why CUDA failed)
    answer = next((line for line in reversed(lines) if line.startswith("[")), None)
    if code != 0 or answer is None:
        return probe.model_copy(update={"sees_gpu": False, "matches_gpu": False,
                                        "reason": f"torch {probe.version} fails to start: {(lines or ['?'])[-1][:200]}"})
    sees, arch_list, _ = json.loads(answer)
    if not sees:
        warning = next((line.split("Warning: ", 1)[1] for line in lines if "Warning: " in line), "")
        return probe.model_copy(update={"sees_gpu": False, "matches_gpu": False, "reason":
                                        f"torch {probe.version} does not see the GPU (driver {gpu.driver_version} supports "
                                        f"CUDA {gpu.cuda_version}, torch needs {probe.cuda}) {warning[:200]}".rstrip()})
    capability = (gpu.gpus[0].compute_capability or "0.0").replace(".", "")
    fits = carries_code_for(arch_list, capability)
    reason = probe.reason + (f", carries code for sm_{capability}" if fits else
                             f", but carries no code for sm_{capability} ({' '.join(arch_list)}): install a build for this GPU")
    return probe.model_copy(update={"sees_gpu": True, "arch_list": arch_list, "matches_gpu": fits, "reason": reason})


class ToolProbe(BaseModel):
    """A tool or package kagent uses where present: Triton, nvcc, ncu."""

    found: bool
    version: str | None = None
    path: str | None = None
    reason: str


@cache
def probe_triton() -> ToolProbe:
    """The installed Triton (its distribution metadata, no import) against the version the
    torch wheel pins: a different Triton may not work with that torch."""
    try:
        version = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return ToolProbe(found=False, reason="triton is not installed (pip install triton)")
    pin = probe_torch().triton_pin
    if pin and pin != version:
        return ToolProbe(found=True, version=version, reason=f"triton {version}, but torch requires triton {pin}")
    return ToolProbe(found=True, version=version, reason=f"triton {version}" + (" (the version torch pins)" if pin else ""))


def _nvcc_path() -> str | None:
    """Where torch.utils.cpp_extension finds nvcc: $CUDA_HOME or $CUDA_PATH, then PATH, then
    /usr/local/cuda (its `_find_cuda_home`)."""
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if home and os.access(os.path.join(home, "bin", "nvcc"), os.X_OK):
            return os.path.join(home, "bin", "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    return "/usr/local/cuda/bin/nvcc" if os.access("/usr/local/cuda/bin/nvcc", os.X_OK) else None


@cache
def probe_nvcc() -> ToolProbe:
    """nvcc's release (`nvcc --version`: "release 12.8, V12.8.93")."""
    path = _nvcc_path()
    if path is None:
        return ToolProbe(found=False, reason="nvcc not found (CUDA toolkit: set CUDA_HOME or put nvcc on PATH)")
    code, out = _run([path, "--version"])
    release = re.search(r"release (\d+\.\d+)", out)
    if code != 0 or not release:
        return ToolProbe(found=False, path=path, reason=f"{path} --version failed: {_first_line(out)}")
    return ToolProbe(found=True, version=release.group(1), path=path, reason=f"nvcc {release.group(1)}")


@cache
def probe_ninja() -> ToolProbe:
    """ninja, found as torch.utils.cpp_extension finds it (`ninja --version` on PATH): load_inline
    builds nothing without it."""
    code, out = _run(["ninja", "--version"])
    if code != 0:
        return ToolProbe(found=False, reason="ninja not on PATH: load_inline cannot build (pip install ninja, with "
                                             "the environment's bin directory on PATH)")
    return ToolProbe(found=True, version=_first_line(out), path=shutil.which("ninja"), reason=f"ninja {_first_line(out)}")


class NcuProbe(ToolProbe):
    """Nsight Compute, and whether the sandbox's worker may read the GPU's counters."""

    profiling_permitted: bool | None = None  # None: no NVIDIA driver to ask


@cache
def probe_ncu(confined: bool = True) -> NcuProbe:
    """Nsight Compute, found as sandbox/ncu.py finds it, and whether the driver lets the worker
    read GPU performance counters: not where they are restricted to admins and the worker
    (confined: no capabilities) cannot be one."""
    path = shutil.which("ncu")
    if path is None:
        return NcuProbe(found=False, reason="ncu not found (Nsight Compute, in the CUDA toolkit): the Judge gets no "
                                            "hardware metrics")
    code, out = _run([path, "--version"])
    version = re.search(r"Version (\S+)", out)
    probe = NcuProbe(found=code == 0, version=version.group(1) if version else None, path=path, reason="")
    try:
        params = NVIDIA_PARAMS.read_text()
    except OSError:
        return probe.model_copy(update={"reason": f"ncu {probe.version}; no NVIDIA driver to profile with"})
    admin_only = re.search(r"RmProfilingAdminOnly:\s*1\b", params) is not None
    permitted = not admin_only or (os.geteuid() == 0 and not confined)
    reason = f"ncu {probe.version}; " + ("profiling permitted" if permitted else
                                         "the driver restricts GPU counters to admins (RmProfilingAdminOnly=1) and the "
                                         "sandbox's worker has no capabilities: load nvidia with "
                                         "NVreg_RestrictProfilingToAdminUsers=0")
    return probe.model_copy(update={"profiling_permitted": permitted, "reason": reason})


# -- the CPU side -------------------------------------------------------------------------------


class CompilerProbe(BaseModel):
    """The C++ compiler the cpp backend uses, proven by building, loading and calling a kernel."""

    works: bool
    compiler: str
    version: str | None = None
    openmp_threads: int | None = None  # omp_get_max_threads() in the built library
    simd_bits: int | None = None  # widest vector ISA -march=native enables: 512, 256, 128; 0 if none
    reason: str


OMP_SIMD_PROBE = r"""
#include <cstdint>
#include <omp.h>
extern "C" void kagent_probe(int64_t* out) {
    out[0] = omp_get_max_threads();
#if defined(__AVX512F__)
    out[1] = 512;
#elif defined(__AVX__)
    out[1] = 256;
#elif defined(__SSE2__) || defined(__ARM_NEON)
    out[1] = 128;
#else
    out[1] = 0;
#endif
}
"""


@cache
def probe_compiler() -> CompilerProbe:
    """Builds a tiny OpenMP library with the cpp backend's own `build` (same compiler, flags and
    cache) and calls it: it reports OpenMP's thread count and the SIMD width of -march=native."""
    import ctypes

    from kagent.sandbox.backends.cpp import COMPILER, build
    from kagent.errors import CompileError

    code, out = _run([COMPILER, "--version"])
    if code != 0:
        return CompilerProbe(works=False, compiler=COMPILER, reason=f"C++ compiler {COMPILER!r} does not run ({_first_line(out)}): "
                                                                    "install g++ or set CXX")
    version = _first_line(out)
    try:
        library = ctypes.CDLL(str(build(OMP_SIMD_PROBE)))
        facts = (ctypes.c_int64 * 2)()
        library.kagent_probe(facts)
    except CompileError as err:
        return CompilerProbe(works=False, compiler=COMPILER, version=version, reason=f"{COMPILER} cannot build an OpenMP kernel: {err}")
    except OSError as err:
        return CompilerProbe(works=False, compiler=COMPILER, version=version, reason=f"the built kernel does not load: {err}")
    threads, simd = int(facts[0]), int(facts[1])
    return CompilerProbe(works=True, compiler=COMPILER, version=version, openmp_threads=threads, simd_bits=simd,
                         reason=f"{version}; OpenMP {threads} threads, {simd}-bit SIMD")


class IsolationProbe(BaseModel):
    """Whether candidates run in their own PID and mount namespace, with every mount read-only but
    their workdir and the build cache and no capabilities (executor.py, confine.py)."""

    namespaces: bool
    confined: bool
    reason: str


# Runs in the namespace the sandbox would use: the fork server's own confinement, then a child's.
CONFINE_CHECK = """
import json
from kagent.sandbox.confine import drop_privileges
from kagent.sandbox.zygote import _confine
confined, detail = _confine(), ""
if confined:
    try:
        drop_privileges()
    except OSError as err:
        confined, detail = False, f"capabilities not dropped: {err}"
print(json.dumps({"confined": confined, "detail": detail}))
"""


@cache
def probe_isolation() -> IsolationProbe:
    """Asks executor.namespace_prefix (the sandbox's own decision), then runs the fork server's
    confinement (zygote._confine, confine.drop_privileges) under that prefix, in a scratch
    directory: what a real worker would get, without importing torch."""
    from kagent.sandbox.supervisor import NAMESPACES_ENV, namespace_prefix, worker_env

    prefix = namespace_prefix()
    if not prefix:
        why = (f"{NAMESPACES_ENV}=0" if os.environ.get(NAMESPACES_ENV) == "0" else
               "unshare not found" if shutil.which("unshare") is None else
               "the kernel or the container refuses PID and mount namespaces")
        return IsolationProbe(namespaces=False, confined=False,
                              reason=f"{why}: candidates see other processes and can write wherever kagent can")
    with tempfile.TemporaryDirectory(prefix="kagent-probe-") as scratch:
        code, out = _run([*prefix, sys.executable, "-c", CONFINE_CHECK], cwd=scratch, env=worker_env("cpu"))
    try:
        answer = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = {"confined": False, "detail": _first_line(out)}
    if answer["confined"]:
        return IsolationProbe(namespaces=True, confined=True, reason="own PID and mount namespace, read-only mounts, "
                                                                     "no capabilities")
    lines = [line.removeprefix("kagent sandbox: ") for line in out.splitlines() if "not locked" in line]
    detail = answer.get("detail") or (lines[0] if lines else "the filesystem could not be locked")
    return IsolationProbe(namespaces=True, confined=False, reason=f"own PID namespace, but not confined: {detail}")


class MemoryProbe(BaseModel):
    """The machine's memory in MiB, against what one evaluation may use."""

    total_mib: int | None
    available_mib: int | None
    worker_limit_mib: int  # what one evaluation may use before it is killed (executor.DEFAULT_MEMORY_MB)
    reason: str


def probe_memory() -> MemoryProbe:
    """MemTotal and MemAvailable from /proc/meminfo (kB)."""
    from kagent.sandbox.supervisor import DEFAULT_MEMORY_MB

    info: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info[key] = int(value.split()[0]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    total, available = info.get("MemTotal"), info.get("MemAvailable")
    reason = f"{available} MiB available of {total} MiB" if total else "/proc/meminfo unreadable"
    if available is not None and available < DEFAULT_MEMORY_MB:
        reason += f": less than an evaluation may use ({DEFAULT_MEMORY_MB} MiB), large tasks may fail"
    return MemoryProbe(total_mib=total, available_mib=available, worker_limit_mib=DEFAULT_MEMORY_MB, reason=reason)


# -- timing noise -------------------------------------------------------------------------------


class TimingProbe(BaseModel):
    """How steady a fixed piece of CPU work times right now, and how busy the machine is."""

    samples: int
    median_ms: float
    spread_pct: float  # (p90 - p10) / median of the samples
    other_cpu_share: float  # share of all CPUs' time used by other processes (and the hypervisor's steal)
    trustworthy: bool
    reason: str


SPREAD_LIMIT_PCT = 5.0  # kagent's own CPU timings agree within ~3% on a quiet machine (bench/README.md)
OTHER_CPU_LIMIT = 0.25  # a quarter of the machine busy elsewhere already moves CPU medians by more


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat's first line (user nice
    system idle iowait irq softirq steal; guest time is already inside user)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def measure_noise(duration_s: float = 2.0) -> TimingProbe:
    """Times a fixed CPU task (SHA-256 of 64 KiB, repeated to ~1 ms) for `duration_s` and reads
    /proc/stat around it: the spread of the samples says how much a measurement moves now, and
    the CPU time other processes took (all busy time but this process's own) says why.
    Self-contained so that sandbox/noise.py can share it."""
    payload = bytes(range(256)) * 256
    started = time.perf_counter_ns()
    hashlib.sha256(payload).digest()
    repeats = max(1, int(1e6 / max(1, time.perf_counter_ns() - started)))  # ~1 ms per sample
    busy_0, total_0 = _cpu_ticks()
    own_0 = time.process_time()
    samples: list[float] = []
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        began = time.perf_counter_ns()
        for _ in range(repeats):
            hashlib.sha256(payload).digest()
        samples.append((time.perf_counter_ns() - began) / 1e6)
    busy_1, total_1 = _cpu_ticks()
    own_ticks = (time.process_time() - own_0) * os.sysconf("SC_CLK_TCK")
    other = max(0.0, min(1.0, (busy_1 - busy_0 - own_ticks) / max(1, total_1 - total_0)))
    deciles = statistics.quantiles(samples, n=10) if len(samples) >= 2 else [samples[0]] * 9
    median = statistics.median(samples)
    spread = 100 * (deciles[8] - deciles[0]) / median
    trustworthy = spread <= SPREAD_LIMIT_PCT and other <= OTHER_CPU_LIMIT
    facts = f"samples spread {spread:.1f}% (p10-p90), other processes used {100 * other:.0f}% of {os.cpu_count()} CPUs"
    reason = (f"quiet: {facts}" if trustworthy else
              f"noisy: {facts}: speedups measured now may be off by more than {SPREAD_LIMIT_PCT:g}%")
    return TimingProbe(samples=len(samples), median_ms=round(median, 4), spread_pct=round(spread, 2),
                       other_cpu_share=round(other, 3), trustworthy=trustworthy, reason=reason)


# -- what each backend can do here --------------------------------------------------------------


class Support(BaseModel):
    """What a backend (or the GPU) can do here: run candidates, time them meaningfully, and why
    not, in one line."""

    can_run: bool
    can_time: bool
    reason: str


def gpu_ready(gpu: GpuProbe, torch: TorchProbe) -> Support:
    """Whether evaluations can run on the GPU: one the driver lists, and a torch built with CUDA
    (and, where the deep probe ran, one that sees the GPU and carries code for it)."""
    if not gpu.available:
        return Support(can_run=False, can_time=False, reason=gpu.reason)
    if not torch.installed or torch.cuda is None or torch.matches_gpu is False:
        return Support(can_run=False, can_time=False, reason=torch.reason)
    return Support(can_run=True, can_time=True, reason=f"{gpu.gpus[0].name}, {torch.reason}")


def backend_support(backend: str, gpu: Support, triton: ToolProbe, nvcc: ToolProbe, torch: TorchProbe,
                    compiler: CompilerProbe | None = None, ninja: ToolProbe | None = None) -> Support:
    """Whether `backend` can run candidates here and time them meaningfully, from probe answers
    (`compiler` and `ninja` are probed where not given and needed)."""
    if backend == "cpp":
        if compiler is None:
            compiler = probe_compiler()
        return Support(can_run=compiler.works, can_time=compiler.works,
                       reason=("built with " if compiler.works else "") + compiler.reason)
    if backend == "triton":
        if not triton.found:
            return Support(can_run=False, can_time=False, reason=triton.reason)
        if gpu.can_run:
            return Support(can_run=True, can_time=True, reason=f"{triton.reason}, compiled and timed on the GPU")
        return Support(can_run=True, can_time=False, reason=f"{gpu.reason}: runs under the Triton interpreter for "
                                                            "correctness only, not timed")
    if backend == "cuda":
        if not gpu.can_run:
            compile_check = "device code compile-checked with nvcc only" if nvcc.found else "nvcc not found either"
            return Support(can_run=False, can_time=False, reason=f"{gpu.reason}: {compile_check}")
        if not nvcc.found:
            return Support(can_run=False, can_time=False, reason=f"{nvcc.reason}: load_inline cannot build")
        ninja = ninja or probe_ninja()
        if not ninja.found:
            return Support(can_run=False, can_time=False, reason=ninja.reason)
        # torch.utils.cpp_extension refuses an nvcc whose major version differs from torch's CUDA.
        if torch.cuda and nvcc.version and nvcc.version.split(".")[0] != torch.cuda.split(".")[0]:
            return Support(can_run=False, can_time=False,
                           reason=f"nvcc {nvcc.version} but torch was built with CUDA {torch.cuda}: load_inline refuses "
                                  "a different major version")
        return Support(can_run=True, can_time=True, reason=f"load_inline with nvcc {nvcc.version}, run and timed on the GPU")
    raise ValueError(f"unknown backend {backend!r}")


def support(backend: str) -> Support:
    """`backend_support` from the cheap probes: what the command line uses."""
    torch = probe_torch()
    return backend_support(backend, gpu_ready(probe_gpu(), torch), probe_triton(), probe_nvcc(), torch)


def default_backend() -> str:
    """The best backend this machine can run and time: Triton where there is a usable GPU, else C++."""
    return "triton" if support("triton").can_time else "cpp"


def require_here(backend: str, device: str) -> None:
    """Raises UsageError, naming the option and the reason, where this machine cannot run
    `device` (cuda without a usable GPU) or `backend` at all (cuda: every candidate would only
    be compile-checked, `not_run`)."""
    from kagent.errors import UsageError

    if device == "cuda":
        gpu = gpu_ready(probe_gpu(), probe_torch())
        if not gpu.can_run:
            raise UsageError(f"--device cuda: {gpu.reason}")
    if backend == "cuda":
        answer = support("cuda")
        if not answer.can_run:
            raise UsageError(f"--backend cuda cannot run here: {answer.reason}")
