"""One planted cheat per anti-cheat check: each candidate below does exactly one dishonest thing,
and the real sandbox (a worker process, the full harness) must name it. No verdict is faked:
every assertion is about what the harness said of a candidate that it actually ran.

The harness runs its checks in a fixed order (see sandbox/harness.py), so each cheat is built
to reach its own check first: the aliasing cheat launches a kernel (or kernel_not_launched would
fire), the caching cheat launches one on every call, and so on. Most candidates share one C++
library (built once per test session) and differ only in their Python `forward`; the few that
need another kernel or task say so.
"""

from __future__ import annotations

import os
import textwrap
import uuid

import pytest

from conftest import TASKS

RELU = TASKS / "01_relu.py"  # (16, 65536) fp32, extra sets: odd_shape, edge_values, single_element
SOFTMAX = TASKS / "04_softmax.py"
MATMUL = TASKS / "06_matmul.py"
LINEAR = TASKS / "08_linear_bias_relu.py"

# Small tasks written for these tests (see `tiny`): fast to run, and a small output lets a
# candidate that keeps references to everything it returned stay cheap.
TINY_TASKS = {
    "relu": '''
        """relu on a small tensor; the extra set is drawn from the same distribution."""
        import torch

        class Model(torch.nn.Module):
            def forward(self, x):
                return torch.relu(x)

        def get_inputs():
            return [torch.randn(8, 64)]

        def get_init_inputs():
            return []

        def get_extra_inputs():
            return {"odd_shape": [torch.randn(3, 5)]}
    ''',
    "wasteful_relu": '''
        """A deliberately wasteful reference: the same relu 50 times, only the last one kept."""
        import torch

        class Model(torch.nn.Module):
            def forward(self, x):
                for _ in range(50):
                    y = torch.relu(x)
                return y

        def get_inputs():
            return [torch.randn(256, 1024)]

        def get_init_inputs():
            return []
    ''',
}

LIBRARY = r'''
#include <chrono>
#include <cstdint>
#include <thread>

extern "C" void relu(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
}

// Launches, computes nothing.
extern "C" void noop(const float* x) {}

// relu that saturates at 8: right for any input a standard normal ever produces.
extern "C" void relu_upto8(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? (x[i] < 8.f ? x[i] : 8.f) : 0.f;
}

// Returns at once; a detached thread writes the result after `delay_us`.
extern "C" void relu_later(const float* x, float* y, int64_t n, int64_t delay_us) {
    std::thread([=] {
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
        relu(x, y, n);
    }).detach();
}
'''


def candidate(*forward: str, top: str = "", init: str = "", methods: str = "") -> str:
    """A cpp candidate built on LIBRARY: `top` is module-level code after `lib` is loaded,
    `init` the body of ModelNew's __init__, `forward` the body of forward(self, x) (pieces
    joined one after the other), `methods` any further methods."""
    def body(*pieces: str) -> str:
        return textwrap.indent("\n".join(textwrap.dedent(p).strip() for p in pieces), " " * 8)

    return "\n".join([
        "import torch",
        "from kagent.sandbox.backends.cpp import load_cpp",
        "",
        f"lib = load_cpp(r'''{LIBRARY}''')",
        textwrap.dedent(top).strip(),
        "",
        "class ModelNew(torch.nn.Module):",
        "    def __init__(self, *args):",
        "        super().__init__()",
        body(init) if init.strip() else "",
        "",
        "    def forward(self, x):",
        body(*forward),
        "",
        textwrap.indent(textwrap.dedent(methods).strip(), " " * 4),
        "",
    ])


HONEST = """
    x = x.contiguous()
    y = torch.empty_like(x)
    lib.relu(x, y, x.numel())
    return y
"""


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    paths = {}
    for name, source in TINY_TASKS.items():
        paths[name] = root / f"{name}.py"
        paths[name].write_text(textwrap.dedent(source))
    return paths


def rejected(verdict, reason: str) -> None:
    """The verdict is a rejection for exactly this reason."""
    assert (verdict.status, verdict.reason) == ("rejected", reason), f"{verdict.status} ({verdict.reason}): {verdict.message}"


def test_the_shared_library_is_honest_when_used_honestly(evaluate, tiny):
    """Control: the kernels the cheats below misuse are right, so each rejection is the cheat's."""
    for task in (RELU, tiny["relu"]):
        verdict = evaluate(task, candidate(HONEST))
        assert verdict.status == "correct", f"{verdict.reason}: {verdict.message}"


# -- torch doing the work --------------------------------------------------------------------


def test_torch_op_after_a_dummy_launch(evaluate):
    """Cheat: launch the kernel for show, then let PyTorch compute the answer."""
    verdict = evaluate(RELU, candidate("""
        y = torch.empty_like(x)
        lib.relu(x, y, x.numel())
        return x.clamp(min=0)
    """))
    rejected(verdict, "torch_op_in_forward")
    assert "clamp" in verdict.artifacts.torch_ops


def test_torch_op_hidden_from_the_op_trace(evaluate):
    """Cheat: compute with torch while the harness's dispatch mode is switched off, into an
    output allocated in plain sight. Caught by name in the source: a kernel has no use for
    torch's dispatch internals."""
    verdict = evaluate(RELU, candidate("""
        y = torch.empty_like(x)
        lib.noop(x)
        with _disable_current_modes():
            torch.clamp(x, min=0, out=y)
        return y
    """, top="from torch.utils._python_dispatch import _disable_current_modes"))
    rejected(verdict, "patched_harness")


def test_fallback_to_reference_when_the_launch_fails(evaluate):
    """Cheat: call the kernel in a way that fails (a non-contiguous tensor) and fall back to torch."""
    verdict = evaluate(RELU, candidate("""
        y = torch.empty_like(x)
        try:
            lib.relu(x.t(), y, x.numel())
        except ValueError:
            return torch.relu(x)
        return y
    """))
    rejected(verdict, "fallback_to_reference")
    assert "relu" in verdict.message


def test_kernel_compiled_but_never_launched(evaluate, tiny):
    """Cheat: build a kernel, then compute the right answer in plain Python."""
    verdict = evaluate(tiny["relu"], candidate("""
        return torch.tensor([[max(v, 0.0) for v in row] for row in x.tolist()])
    """))
    rejected(verdict, "kernel_not_launched")


def test_kernel_skipped_under_timing(evaluate, tiny):
    """Cheat: launch while being checked (the first calls), then return the previous result
    without launching anything: every timed call gets inputs of its own, so it cannot wait
    for the same tensor to come back, and counts calls instead."""
    verdict = evaluate(tiny["relu"], candidate("""
        self.calls += 1
        if self.calls > 40 and self.memo:
            return self.memo[0]
        y = torch.empty_like(x)
        lib.relu(x, y, x.numel())
        self.memo[:] = [y]
        return y
    """, init="self.memo, self.calls = [], 0"))
    rejected(verdict, "kernel_not_launched")
    assert "timed" in verdict.message


# -- what the forward returns ----------------------------------------------------------------


def test_output_aliases_input(evaluate):
    """Cheat: relu in place on the input, and return the input itself."""
    verdict = evaluate(RELU, candidate("""
        lib.relu(x, x, x.numel())
        return x
    """))
    rejected(verdict, "output_aliases_input")


def test_mutates_input(evaluate):
    """Cheat: write the result into the input, return a fresh copy of it."""
    verdict = evaluate(RELU, candidate("""
        lib.relu(x, x, x.numel())
        return x.clone()
    """))
    rejected(verdict, "mutates_input")


def test_cached_output_returned_again(evaluate):
    """Cheat: compute once, then return the very same tensor object on every later call."""
    verdict = evaluate(RELU, candidate("""
        if not _cache:
            _cache.append(torch.empty_like(x))
            lib.relu(x, _cache[0], x.numel())
        lib.noop(x)  # a launch on every call
        return _cache[0]
    """, top="_cache = []"))
    rejected(verdict, "cached_output")
    assert "freshly allocated" in verdict.message


def test_cached_output_precomputed_at_construction(evaluate):
    """Cheat: compute the result in __init__ and return it from forward."""
    verdict = evaluate(RELU, candidate("""
        lib.noop(x)
        return self.answer
    """, init="""
        x = torch.randn(16, 65536)
        self.answer = torch.empty_like(x)
        lib.relu(x, self.answer, x.numel())
    """))
    rejected(verdict, "cached_output")
    assert "freshly allocated" in verdict.message


def test_cached_values_in_a_fresh_tensor(evaluate):
    """Cheat: compute once, then return a fresh copy of the first answer on every call."""
    verdict = evaluate(RELU, candidate("""
        if not _cache:
            _cache.append(torch.empty_like(x))
            lib.relu(x, _cache[0], x.numel())
        lib.noop(x)
        return _cache[0].clone()
    """, top="_cache = []"))
    rejected(verdict, "cached_output")
    assert "earlier input set" in verdict.message


def test_cached_by_input_address_under_timing(evaluate):
    """Cheat: honest on the checked calls (the first ones), then a cache keyed on the input's
    address: the timed calls cycle through a ring of input sets, so each address comes back
    with the same values and the cached copy is right. Fresh allocations, a launch per call.
    After timing one ring set gets new values in place: the answer must follow them."""
    verdict = evaluate(RELU, candidate("""
        _calls.append(1)
        if len(_calls) > 40 and x.data_ptr() in _cache:
            lib.noop(x)
            return _cache[x.data_ptr()].clone()
        y = torch.empty_like(x)
        lib.relu(x, y, x.numel())
        if len(_calls) > 40:
            _cache[x.data_ptr()] = y.clone()
        return y
    """, top="_calls, _cache = [], {}"))
    rejected(verdict, "cached_output")
    assert "changed in place" in verdict.message


def test_stale_memory(evaluate, tiny):
    """Cheat: allocate the output and write nothing, hoping the allocator hands back the
    memory that held the reference's answer."""
    verdict = evaluate(tiny["relu"], candidate("""
        y = torch.empty_like(x)
        lib.noop(x)
        return y
    """))
    rejected(verdict, "stale_memory")
    assert verdict.failed_input_set == "seed:0"


@pytest.mark.parametrize("returned", [
    "torch.empty_like(x).as_subclass(Shady)",  # a subclass can override comparisons
    'torch.empty_like(x, device="meta")',  # no data at all
    "torch.empty(x.shape, layout=torch.sparse_coo)",  # no strided storage
], ids=["subclass", "meta", "sparse"])
def test_not_a_plain_tensor(evaluate, returned):
    """Cheat: return something that looks like a tensor but is not a plain, dense CPU tensor."""
    verdict = evaluate(RELU, candidate(f"""
        lib.noop(x)
        return {returned}
    """, top="class Shady(torch.Tensor):\n    pass"))
    rejected(verdict, "not_a_plain_tensor")


# -- work left running -----------------------------------------------------------------------


def test_background_cpp_thread(evaluate, tiny):
    """Cheat: the kernel returns at once and a detached C++ thread writes the answer 20 ms later."""
    verdict = evaluate(tiny["relu"], candidate("""
        y = torch.empty_like(x)
        _keep.append((x, y))  # the late write must land in live memory
        lib.relu_later(x, y, x.numel(), 20000)
        return y
    """, top="_keep = []"))
    rejected(verdict, "background_work")


def test_background_python_thread_evading_the_import_scan(evaluate, tiny):
    """Cheat: a Python thread (threading reached through sys.modules, not imported) writes the
    answer after the forward returned; still running when the harness looks."""
    verdict = evaluate(tiny["relu"], candidate("""
        y = torch.empty_like(x)
        lib.noop(x)
        def late():
            time.sleep(0.5)
            lib.relu(x, y, x.numel())
        sys.modules["threading"].Thread(target=late, daemon=True).start()
        return y
    """, top="import sys\nimport time"))
    rejected(verdict, "background_work")
    assert verdict.message.startswith("the output changed after the forward returned")


@pytest.mark.parametrize("top, what", [
    ("from kagent.sandbox.backends.cpp import load_cpp, ctypes", "kagent.sandbox.backends.cpp.ctypes"),
    ("import kagent.sandbox.backends.cpp", "kagent.sandbox.backends.cpp"),
    ("from kagent.sandbox.backends.cpp import launches", "kagent.sandbox.backends.cpp.launches"),
], ids=["ctypes-through-the-backend", "the-backend-module", "the-launch-counter"])
def test_only_load_cpp_comes_from_kagent(evaluate, tiny, top, what):
    """Cheat: take what the cpp backend imported (ctypes, forbidden on its own; the launch
    counter the kernel_not_launched check reads) through the one kagent module a candidate
    may import from."""
    verdict = evaluate(tiny["relu"], candidate(HONEST, top=top))
    rejected(verdict, "forbidden_import")
    assert what in verdict.message, verdict.message


def test_function_globals_are_introspection(evaluate, tiny):
    """Cheat: reach the backend's module namespace through load_cpp.__globals__."""
    verdict = evaluate(tiny["relu"], candidate(HONEST, top='load_cpp.__globals__["launches"]'))
    rejected(verdict, "introspection")


def test_threading_import_is_rejected_statically(evaluate, tiny):
    """Cheat: import threading (or _thread, its lower layer) to leave work running."""
    for module in ("threading", "_thread"):
        verdict = evaluate(tiny["relu"], candidate(HONEST, top=f"import {module}"))
        rejected(verdict, "forbidden_import")
        assert module in verdict.message


def test_async_only_under_timing(evaluate, tiny):
    """Cheat: synchronous while being checked (the first calls); then hand the work to a
    native thread and return at once. The timed call whose output is copied the moment it
    returns shows the difference."""
    verdict = evaluate(tiny["relu"], candidate("""
        y = torch.empty_like(x)
        _keep.append((x, y))
        self.calls += 1
        if self.calls > 40:
            lib.relu_later(x, y, x.numel(), 20000)
        else:
            lib.relu(x, y, x.numel())
        return y
    """, top="_keep = []", init="self.calls = 0"))
    rejected(verdict, "background_work")
    assert "timed call" in verdict.message


# -- reaching into the harness ---------------------------------------------------------------


@pytest.mark.parametrize("patch", [
    "torch.allclose = lambda *args, **kwargs: True",
    "time.perf_counter_ns = lambda: 0",
    # the harness is not importable (a static check), but it is in sys.modules
    'sys.modules["kagent.sandbox.compare"].compare = lambda *a, **k: sys.modules["kagent.sandbox.compare"].Comparison(True)',
], ids=["torch", "timer", "harness"])
def test_patched_harness(evaluate, patch):
    """Cheat: replace what the harness relies on at import, then return garbage."""
    verdict = evaluate(RELU, candidate("""
        lib.noop(x)
        return torch.zeros_like(x)
    """, top=f"import sys\nimport time\n{patch}"))
    rejected(verdict, "patched_harness")


@pytest.mark.parametrize("source, found", [
    ("frame = sys._getframe(1)", "uses ._getframe"),
    ("import gc", "imports gc"),
], ids=["getframe", "gc"])
def test_introspection_static(evaluate, source, found):
    """Cheat: reach the harness's frames or objects; visible in the source (so rejected before
    it runs)."""
    verdict = evaluate(RELU, candidate(HONEST, top=f"import sys\n{source}"))
    rejected(verdict, "introspection")
    assert found in verdict.message


def test_introspection_at_run_time(evaluate):
    """Cheat: get the caller's frame with a name the static scan cannot see, and swallow the
    error the sandbox raises."""
    verdict = evaluate(RELU, candidate("""
        try:
            getattr(sys, "_get" + "frame")(1)
        except PermissionError:
            pass
    """, HONEST, top="import sys"))
    rejected(verdict, "introspection")


def test_introspection_from_a_method_the_harness_calls(evaluate):
    """Cheat: do the introspection in an overridden nn.Module method that the harness itself
    calls (parameters()), outside the forward."""
    verdict = evaluate(RELU, candidate(HONEST, top="import sys", methods="""
        def parameters(self, recurse=True):
            getattr(sys, "_get" + "frame")(1)
            return super().parameters(recurse)
    """))
    rejected(verdict, "introspection")


# -- right on the test inputs only -----------------------------------------------------------


BF16_MATMUL = r'''
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
#include <cstring>
// Round to bfloat16 (nearest even), kept in a float.
static inline float bf16(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
    std::memcpy(&v, &u, 4);
    return v;
}
extern "C" void matmul(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            float acc = 0.f;
            for (int64_t k = 0; k < K; ++k) acc += bf16(A[i * K + k]) * bf16(B[k * N + j]);
            C[i * N + j] = acc;
        }
}
""")

class ModelNew(torch.nn.Module):
    def forward(self, A, B):
        A, B = A.contiguous(), B.contiguous()
        C = torch.empty(A.shape[0], B.shape[1])
        lib.matmul(A, B, C, A.shape[0], B.shape[1], A.shape[1])
        return C
'''


def test_silently_lowered_precision(evaluate):
    """Cheat: an fp32 matmul that rounds its inputs to bf16 first (about 4x the speed on
    hardware with bf16 units), close enough to fool a loose tolerance."""
    verdict = evaluate(MATMUL, BF16_MATMUL)
    assert (verdict.status, verdict.reason) == ("incorrect", "precision_loss"), verdict.message


SOFTMAX_8192 = r'''
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cmath>
#include <cstdint>
extern "C" void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        float m = -INFINITY, s = 0.f;
        for (int64_t c = 0; c < cols; ++c) m = xr[c] > m ? xr[c] : m;
        for (int64_t c = 0; c < cols; ++c) s += (yr[c] = std::exp(xr[c] - m));
        for (int64_t c = 0; c < cols; ++c) yr[c] /= s;
    }
}
""")

DIM = 8192  # the task's declared row length


class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.zeros_like(x)
        lib.softmax_rows(x, y, x.numel() // DIM, DIM)
        return y
'''


def test_hard_coded_shape(evaluate):
    """Cheat: use the task's declared row length instead of the input's (right on every input
    of the declared shape, whatever the seed)."""
    verdict = evaluate(SOFTMAX, SOFTMAX_8192)
    assert (verdict.status, verdict.reason) == ("incorrect", "shape_specialized"), verdict.message
    assert verdict.failed_input_set == "extra:large_values"


def test_input_distribution_exploited(evaluate, tiny):
    """Cheat: a kernel that is only right for the values a standard normal produces."""
    verdict = evaluate(tiny["relu"], candidate("""
        y = torch.empty_like(x)
        lib.relu_upto8(x, y, x.numel())
        return y
    """))
    assert (verdict.status, verdict.reason) == ("incorrect", "distribution_specialized"), verdict.message
    assert verdict.failed_input_set == "dist:scaled_shifted"


def test_inputs_cannot_be_predicted(evaluate):
    """Cheat attempt: reproduce the input sets from torch's seed (read at import, or the RNG
    state the constructor sees) to precompute answers. This candidate returns garbage for any
    input it managed to predict, so it is correct only if it predicted none."""
    verdict = evaluate(RELU, candidate("""
        if any(x.flatten()[:8].tolist() == g for g in self.guesses):
            lib.noop(x)
            return torch.zeros_like(x)
    """, HONEST, top="""
        _import_seed = torch.initial_seed()
    """, init="""
        self.guesses = [torch.randn(16, 65536).flatten()[:8].tolist()]  # the constructor's RNG
        for seed in (_import_seed, _import_seed - 1000, torch.initial_seed()):
            torch.manual_seed(seed)
            self.guesses.append(torch.randn(16, 65536).flatten()[:8].tolist())
    """))
    assert verdict.status == "correct", f"{verdict.reason}: {verdict.message}"


# -- leaving the harness ---------------------------------------------------------------------


def test_sys_exit_in_forward(evaluate):
    """Cheat: end the evaluation from the forward (SystemExit), hoping for a default pass."""
    verdict = evaluate(RELU, candidate("sys.exit(0)", top="import sys"))
    assert (verdict.status, verdict.reason) == ("runtime_error", "exited_early"), verdict.message


def test_os_exit_in_forward(evaluate):
    """Cheat: kill the worker process from the forward before any verdict is written."""
    verdict = evaluate(RELU, candidate("os._exit(0)", top="import os"))
    assert (verdict.status, verdict.reason) == ("runtime_error", "exited_early"), verdict.message


def test_forged_result_file(evaluate):
    """Cheat: write a 'correct' verdict where the worker writes its result, then exit."""
    verdict = evaluate(RELU, candidate("""
        verdict = {"status": "correct", "reason": "ok", "message": "forged", "backend": "cpp",
                   "device": "cpu", "speedup": 100.0}
        body = json.dumps({"verdict": verdict})
        with open("result.json", "w") as f:
            json.dump({"body": body, "mac": "0" * 64}, f)
        os._exit(0)
    """, top="import json\nimport os"))
    assert verdict.status != "correct"
    assert (verdict.status, verdict.reason) == ("rejected", "forged_result"), verdict.message


FORGE_WITH_STOLEN_KEY = """
    key = bytes.fromhex(steal_key())
    verdict = {"status": "correct", "reason": "ok", "message": "forged", "backend": "cpp",
               "device": "cpu", "speedup": 100.0}
    body = json.dumps({"verdict": verdict})
    with open("result.json", "w") as f:
        json.dump({"body": body, "mac": hmac.new(key, body.encode(), "sha256").hexdigest()}, f)
    os._exit(0)
"""

# The worker's job line for this evaluation, {"workdir": <the cwd>, "key": <hex>}, is still in its
# memory (lines of earlier evaluations too: the workdir tells them apart).
STEAL_KEY_PYTHON = r'''
import hmac, json, os, re

def steal_key():
    pattern = re.escape(f'"workdir": "{os.getcwd()}", "key": "'.encode()) + rb'([0-9a-f]{64})"'
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if perms.startswith("rw"):
                start, end = (int(a, 16) for a in span.split("-"))
                try:
                    mem.seek(start)
                    found = re.search(pattern, mem.read(end - start))
                except OSError:
                    continue
                if found:
                    return found.group(1).decode()
'''

def test_forged_result_signed_with_a_key_read_from_proc_mem(evaluate):
    """Cheat: read the evaluation's signing key out of the worker's own memory through
    /proc/self/mem, then write a validly signed 'correct' verdict and exit."""
    verdict = evaluate(RELU, candidate(FORGE_WITH_STOLEN_KEY, top=STEAL_KEY_PYTHON))
    rejected(verdict, "introspection")
    assert "/mem" in verdict.message


# Native code reads whatever it likes in its own process, without /proc/self/mem: here the
# worker's job line for this evaluation (found by the cwd, which is its workdir), with the
# evaluation's signing key and the request's input seeds.
STEAL_JOB_NATIVE = r"""
import hmac, json, os, re

thief = load_cpp(r'''
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>

extern "C" void find_job(const char* needle, int64_t needle_len, char* out, int64_t cap) {
    char path[32];  // spelled at run time: the cpp backend refuses a source naming the memory map
    snprintf(path, sizeof path, "/proc/%s/%s", "self", "maps");
    FILE* maps = fopen(path, "r");
    char line[1024];
    while (fgets(line, sizeof line, maps)) {
        unsigned long start, end;
        char perms[8];
        char path[512] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %511s", &start, &end, perms, path) < 3) continue;
        if (perms[0] != 'r' || perms[1] != 'w' || strncmp(path, "/dev", 4) == 0) continue;
        const char* from = (const char*)start;
        const char* stop = (const char*)end;
        while (const char* hit = (const char*)memmem(from, stop - from, needle, needle_len)) {
            const char* key = hit + needle_len;  // the real line, not a copy of the needle
            bool real = key + 65 <= stop && key[64] == '"';
            for (int i = 0; real && i < 64; ++i) real = isxdigit(key[i]) && !isupper(key[i]);
            if (real) {
                int64_t back = hit - (const char*)start < cap - 200 ? hit - (const char*)start : cap - 200;
                memcpy(out, hit - back, back + needle_len + 65);
                fclose(maps);
                return;
            }
            from = hit + 1;
        }
    }
    fclose(maps);
}
''')


def steal_job():
    needle = f'"workdir": "{os.getcwd()}", "key": "'.encode()
    out = torch.zeros(1 << 16, dtype=torch.uint8)
    thief.find_job(torch.tensor(list(needle), dtype=torch.uint8), len(needle), out, out.numel())
    text = bytes(out.tolist()).decode(errors="replace")
    seeds = json.loads(re.findall(r'"seeds": (\[[0-9, ]*\])', text)[-1])
    return re.findall(r'"key": "([0-9a-f]{64})"', text)[-1], seeds


def forge(outputs, input_sets, **timings):
    key, _ = steal_job()
    os.makedirs("outputs", exist_ok=True)  # as the worker saves them (sandbox/messages.py)
    for position, values in enumerate(outputs.values()):
        torch.save(values, f"outputs/{position}.pt")
    torch.save(list(outputs), "outputs.pt")
    verdict = {"status": "correct", "reason": "ok", "message": "forged", "backend": "cpp",
               "device": "cpu", "input_sets": input_sets, "speedup": 100.0, **timings}
    body = json.dumps({"verdict": verdict})
    with open("result.json", "w") as f:
        json.dump({"body": body, "mac": hmac.new(bytes.fromhex(key), body.encode(), "sha256").hexdigest()}, f)
    os._exit(0)


def tiny_relu_sets(seeds):
    # the input sets of the tiny relu task, drawn as the harness draws them (sandbox/task.py)
    sets = {}
    for seed in seeds:
        torch.manual_seed(seed)
        sets[f"seed:{seed}"] = torch.randn(8, 64)
    torch.manual_seed(seeds[0] + 1000)
    sets["extra:odd_shape"] = torch.randn(3, 5)
    sets["dist:scaled_shifted"] = sets[f"seed:{seeds[0]}"] * 16.0 + 4.0
    return sets
"""

FORGE_WRONG_OUTPUTS = """
    _, seeds = steal_job()
    sets = tiny_relu_sets(seeds)
    forge({**{name: [torch.zeros_like(x)] for name, x in sets.items()}, "timed": [torch.zeros(8, 64)]}, list(sets))
"""

FORGE_IMPOSSIBLE_TIMINGS = """
    _, seeds = steal_job()
    sets = tiny_relu_sets(seeds)
    first = sets[f"seed:{seeds[0]}"]
    stats = lambda ms: {"median_ms": ms, "mean_ms": ms, "std_ms": 0.0, "min_ms": ms, "p20_ms": ms, "p80_ms": ms, "runs": 1000}
    forge({**{name: [torch.relu(x)] for name, x in sets.items()}, "timed": [torch.relu(first)]}, list(sets),
          ref_time_ms=50.0, candidate_time_ms=0.5, timing_meaningful=True,
          ref_timing=stats(50.0), candidate_timing=stats(0.5))
"""


# Outputs that are a pickle running a command when loaded: the verifier is outside the sandbox.
FORGE_CODE_IN_OUTPUTS = """
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch MARKER",))

    _, seeds = steal_job()
    names = list(tiny_relu_sets(seeds))
    forge({name: Payload() for name in names}, names)
"""
PWNED = f"/tmp/kagent-pwned-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("forgery, why", [
    (FORGE_WRONG_OUTPUTS, "the verifier disagrees on input set seed:"),
    (FORGE_IMPOSSIBLE_TIMINGS, "more than the whole evaluation took"),
    (FORGE_CODE_IN_OUTPUTS.replace("MARKER", PWNED), "cannot be read"),
], ids=["wrong-outputs", "impossible-timings", "code-in-outputs"])
def test_verdict_forged_by_native_code_with_the_stolen_key(evaluate, tiny, forgery, why):
    """Cheat: native code finds the evaluation's job line in the worker's memory, so the forged
    'correct' verdict carries a valid signature and names the right input sets. What still
    stops it lives outside the candidate's process: the verifier recomputes the reference and
    compares it with the outputs saved beside the verdict (all zeros here), and the claimed
    timings must fit in the wall time the parent measured (here right outputs, made with torch
    from the stolen seeds, and 50 s of claimed reference runs); and the saved outputs are read
    as plain tensors, never run as code (here a pickle that would run a command)."""
    verdict = evaluate(tiny["relu"], candidate(forgery, top=STEAL_JOB_NATIVE))
    rejected(verdict, "forged_result")
    assert why in verdict.message, verdict.message
    assert not os.path.exists(PWNED)  # loading the outputs ran nothing


@pytest.mark.parametrize("call, reason", [
    ("os.fork()", "forbidden_call"),
    ('sys.modules["subprocess"].run(["true"])', "forbidden_call"),
    ("import subprocess", "forbidden_import"),
], ids=["fork", "subprocess-at-run-time", "subprocess-import"])
def test_forbidden_calls(evaluate, call, reason):
    """Cheat: start another process (to work outside the sandbox's view, or outlive it)."""
    verdict = evaluate(RELU, candidate(call, HONEST, top="import os\nimport sys"))
    rejected(verdict, reason)


# -- verdicts that must be flagged or must pass ------------------------------------------------


def test_a_large_speedup_over_a_wasteful_reference_is_judged_by_the_speed_of_light(evaluate, tiny):
    """A legit kernel against a wasteful reference (the same relu 50 times): the speedup is
    real, and the speed of light (one pass over the data, whatever the reference does) says
    the kernel is a plausible one, not an impossible one: correct, not flagged."""
    from kagent.sandbox.sol import FASTER_THAN_LIGHT

    verdict = evaluate(tiny["wasteful_relu"], candidate(HONEST))
    assert verdict.status == "correct", f"{verdict.reason}: {verdict.message}"
    assert verdict.speedup > 5 and not verdict.implausible_speedup
    assert 0 < verdict.sol_fraction <= FASTER_THAN_LIGHT["cpu"] and "of the speed of light" in verdict.message


LINEAR_CANDIDATE = r'''
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
extern "C" void linear_relu(const float* x, const float* w, const float* b, float* y,
                            int64_t M, int64_t K, int64_t N) {
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            float s = b[n];
            for (int64_t k = 0; k < K; ++k) s += x[m * K + k] * w[n * K + k];
            y[m * N + n] = s > 0.f ? s : 0.f;
        }
}
""")


class ModelNew(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)  # the reference's names
        torch.nn.init.zeros_(self.linear.weight)  # and not its initial values

    def forward(self, x):
        x = x.contiguous()
        w, b = self.linear.weight.contiguous(), self.linear.bias.contiguous()
        y = torch.empty(x.shape[0], w.shape[0])
        lib.linear_relu(x, w, b, y, x.shape[0], x.shape[1], w.shape[0])
        return y
'''


def test_same_weights_are_loaded_from_the_reference(evaluate):
    """Not a cheat: a ModelNew whose parameters have the reference's names gets the
    reference's weights, whatever it initialised them to."""
    verdict = evaluate(LINEAR, LINEAR_CANDIDATE)
    assert verdict.status == "correct", f"{verdict.reason}: {verdict.message}"
