"""Ahead-of-time sm_90 compile of Triton kernels that ran under the interpreter.

Everything triton-related runs in one subprocess with TRITON_INTERPRET=1 set before triton is
imported, as in the sandbox worker; the flag must not leak into this pytest process.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRITON = importlib.util.find_spec("triton")  # found without importing it here
BUNDLED_PTXAS = TRITON and Path(TRITON.origin).parent / "backends/nvidia/bin/ptxas"

pytestmark = pytest.mark.skipif(
    TRITON is None or not (BUNDLED_PTXAS.exists() or shutil.which("ptxas")), reason="needs triton and ptxas"
)

KERNELS = '''
import triton
import triton.language as tl


@triton.jit
def _twice(x):
    return x * 2


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    y = tl.load(y_ptr + offs, mask=mask)
    tl.store(out_ptr + offs, _twice(x) + y, mask=mask)


@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K, s_am, s_ak, s_bk, s_bn, s_cm, s_cn,
                  BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)  # tl.zeros is itself a jit function in triton's stdlib
    for k in range(0, tl.cdiv(K, BK)):
        kk = k * BK + rk
        a = tl.load(a_ptr + rm[:, None] * s_am + kk[None, :] * s_ak,
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)
        b = tl.load(b_ptr + kk[:, None] * s_bk + rn[None, :] * s_bn,
                    mask=(kk[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc += tl.dot(a, b)
    tl.store(c_ptr + rm[:, None] * s_cm + rn[None, :] * s_cn, acc.to(tl.float16),
             mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.jit
def bad_dot_kernel(a_ptr, c_ptr, BM: tl.constexpr, BK: tl.constexpr):
    r = tl.arange(0, BM)
    k = tl.arange(0, BK)
    a = tl.load(a_ptr + r[:, None] * BK + k[None, :])
    c = tl.dot(a, a)  # (BM, BK) @ (BM, BK): inner dimensions differ
    tl.store(c_ptr + r[:, None] * BM + r[None, :], c)


@triton.jit
def bad_asm_kernel(x_ptr):
    x = tl.load(x_ptr)
    y = tl.inline_asm_elementwise("no.such.instruction $0, $1;", "=r,r", [x], dtype=tl.int32, is_pure=True, pack=1)
    tl.store(x_ptr, y)


@triton.jit
def mixed_args_kernel(x_ptr, scale, big, one, n, BLOCK: tl.constexpr, ACC: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    tl.store(x_ptr + offs, (x.to(ACC) * scale + (big + one).to(ACC)).to(tl.bfloat16), mask=mask)


# Only single-config autotuning can run on CPU: with several configs the autotuner benchmarks,
# which needs a GPU driver even under the interpreter.
@triton.autotune(configs=[triton.Config({"BLOCK": 128}, num_warps=2, num_stages=2)], key=["n"])
@triton.heuristics({"EVEN": lambda args: args["n"] % args["BLOCK"] == 0})
@triton.jit
def tuned_scale_kernel(x_ptr, n, BLOCK: tl.constexpr, EVEN: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if EVEN:
        tl.store(x_ptr + offs, tl.load(x_ptr + offs) * 3)
    else:
        mask = offs < n
        tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=mask) * 3, mask=mask)


@triton.autotune(configs=[triton.Config({"BLOCK": 64}), triton.Config({"BLOCK": 128})], key=["n"])
@triton.jit
def untuned_kernel(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(x_ptr + offs, 0.0, mask=offs < n)
'''

DRIVER = '''
import importlib.util, json, sys, time
import torch
from kagent.sandbox.backends import triton_static as ts

spec = importlib.util.spec_from_file_location("static_kernels", sys.argv[1])
K = importlib.util.module_from_spec(spec)
sys.modules["static_kernels"] = K
spec.loader.exec_module(K)
out = {}


def static(name, fn, args, kwargs, **extra):
    desc = ts.describe_launch(fn, args, kwargs)
    t0 = time.perf_counter()
    res = ts.compile_for_gpu(fn, *desc, **extra)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts.compile_for_gpu(fn, *desc, **extra)   # same kernel again: triton's cache is warm now
    out[name] = dict(describe=list(desc), result=res.model_dump(), cold_s=cold, warm_s=time.perf_counter() - t0)
    return res


n = 1000
x, y, o = torch.randn(n), torch.randn(n), torch.empty(n)
args, kw = (x, y, o, n), {"BLOCK": 256}
K.add_kernel[(4,)](*args, **kw)
assert torch.allclose(o, 2 * x + y)
static("add", K.add_kernel, args, kw)

M = N = Kd = 64
a, b = torch.randn(M, Kd, dtype=torch.float16), torch.randn(Kd, N, dtype=torch.float16)
c = torch.empty(M, N, dtype=torch.float16)
args = (a, b, c, M, N, Kd, *a.stride(), *b.stride(), *c.stride())
kw = {"BM": 32, "BN": 32, "BK": 32, "num_warps": 4, "num_stages": 3}
K.matmul_kernel[(2, 2)](*args, **kw)
assert torch.allclose(c.float(), a.float() @ b.float(), atol=0.1, rtol=0.01)
static("matmul", K.matmul_kernel, args, kw)
# what triton would really specialise on: also the int args that are multiples of 16 (M, N, K, strides)
static("matmul_divisible", K.matmul_kernel, args, kw,
       divisible_by_16=ts.divisible_params(K.matmul_kernel, args, kw))

res = ts.compile_for_gpu(K.bad_dot_kernel, {"a_ptr": "*fp16", "c_ptr": "*fp32"}, {"BM": 32, "BK": 16})
out["bad_dot"] = dict(result=res.model_dump())
out["bad_asm"] = ts.compile_for_gpu(K.bad_asm_kernel, {"x_ptr": "*i32"}, {}).model_dump()

xb = torch.randn(16).to(torch.bfloat16)
args, kw = (xb, 0.5, 2**40, 1, 16), {"BLOCK": 16, "ACC": K.tl.float32}
K.mixed_args_kernel[(1,)](*args, **kw)
sig, cx, nw, ns = ts.describe_launch(K.mixed_args_kernel, args, kw)
out["mixed"] = dict(describe=[sig, {k: str(v) for k, v in cx.items()}, nw, ns],
                    result=ts.compile_for_gpu(K.mixed_args_kernel, sig, cx, nw, ns).model_dump())

xt = torch.ones(300)
K.tuned_scale_kernel[lambda meta: ((300 + meta["BLOCK"] - 1) // meta["BLOCK"],)](xt, 300)
assert torch.allclose(xt, torch.full((300,), 3.0))
static("tuned", K.tuned_scale_kernel, (xt, 300), {})
out["tuned"]["best"] = K.tuned_scale_kernel.best_config.kwargs
try:
    ts.describe_launch(K.untuned_kernel, (xt, 300), {})
except ValueError as err:
    out["untuned"] = str(err)

sig, cx, nw, ns = out["add"]["describe"]
out["timeout"] = ts.compile_for_gpu(K.add_kernel, sig, cx, nw, ns, timeout_s=0.01).model_dump()
ts._ptxas = lambda arch: None
out["no_ptxas"] = ts.compile_for_gpu(K.add_kernel, sig, cx, nw, ns).model_dump()

# compiling must not disturb the interpreter in this process
o2 = torch.empty(n)
K.add_kernel[(4,)](x, y, o2, n, BLOCK=256)
out["interpreter_still_ok"] = bool(torch.allclose(o2, 2 * x + y))
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("triton_static")
    (tmp / "static_kernels.py").write_text(textwrap.dedent(KERNELS))
    env = {**os.environ, "TRITON_INTERPRET": "1", "TRITON_CACHE_DIR": str(tmp / "cache"),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(tmp / "static_kernels.py")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("add", "matmul", "matmul_divisible", "tuned"):
        print(f"compile_for_gpu {name}: cold {out[name]['cold_s']:.2f}s, warm {out[name]['warm_s']:.2f}s")
    return out


def _ok(res):
    assert res["error"] is None, res["error"]
    assert res["target"] == "sm_90a"
    assert res["registers"] > 0
    assert isinstance(res["spill_stores_bytes"], int) and isinstance(res["spill_loads_bytes"], int)
    assert isinstance(res["shared_memory_bytes"], int)


def test_vector_add(report):
    sig, cx, nw, ns = report["add"]["describe"]
    assert sig == {"x_ptr": "*fp32", "y_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32"}
    assert (cx, nw, ns) == ({"BLOCK": 256}, 4, 3)
    res = report["add"]["result"]
    _ok(res)
    assert res["kernel"] == "add_kernel" and res["constexprs"] == {"BLOCK": 256}


def test_matmul_uses_shared_memory(report):
    sig, cx, nw, ns = report["matmul"]["describe"]
    assert sig["a_ptr"] == "*fp16" and sig["M"] == "i32"
    assert cx["s_ak"] == 1 and cx["BK"] == 32  # triton specialises ints equal to 1 as constexprs
    for name in ("matmul", "matmul_divisible"):
        res = report[name]["result"]
        _ok(res)
        assert res["num_stages"] >= 2 and res["shared_memory_bytes"] > 0


def test_compile_error_is_one_line(report):
    res = report["bad_dot"]["result"]
    assert res["error"] and "\n" not in res["error"] and "bad_dot_kernel" in res["error"]
    assert res["registers"] is None and res["shared_memory_bytes"] is None and res["spill_stores_bytes"] is None
    # PTX that only ptxas rejects: still one line, and it names the ptxas complaint
    res = report["bad_asm"]
    assert res["registers"] is None and "\n" not in res["error"] and "known instruction: 'no'" in res["error"]


def test_describe_launch_types(report):
    sig, cx, nw, ns = report["mixed"]["describe"]
    assert sig == {"x_ptr": "*bf16", "scale": "fp32", "big": "i64", "n": "i32"}
    assert cx == {"one": "1", "BLOCK": "16", "ACC": "fp32"}  # ints equal to 1 become constexprs
    _ok(report["mixed"]["result"])
    assert report["mixed"]["result"]["constexprs"] == {"one": 1, "BLOCK": 16, "ACC": "fp32"}


def test_autotuned_kernel_uses_chosen_config(report):
    sig, cx, nw, ns = report["tuned"]["describe"]
    assert cx == {**report["tuned"]["best"], "EVEN": False}  # config kwargs, then the heuristic
    assert sig == {"x_ptr": "*fp32", "n": "i32"} and (nw, ns) == (2, 2)
    _ok(report["tuned"]["result"])
    assert "launch it first" in report["untuned"]


def test_failures_become_error_fields(report):
    assert "timed out" in report["timeout"]["error"] and report["timeout"]["registers"] is None
    assert report["no_ptxas"]["error"] == "ptxas not found"


def test_interpreter_unaffected(report):
    assert report["interpreter_still_ok"]


def test_parse_ptxas_log():
    from kagent.sandbox.backends.triton_static import _parse_ptxas

    log = textwrap.dedent("""\
        ptxas info    : 0 bytes gmem
        ptxas info    : Compiling entry function 'other' for 'sm_90a'
        ptxas info    : Used 12 registers
        ptxas info    : Compiling entry function 'k' for 'sm_90a'
        ptxas info    : Function properties for k
            8 bytes stack frame, 24 bytes spill stores, 16 bytes spill loads
        ptxas info    : Used 255 registers, used 1 barriers, 1024 bytes smem, 380 bytes cmem[0]
        """)
    assert _parse_ptxas(log, "k") == (255, 1024, 24, 16)
