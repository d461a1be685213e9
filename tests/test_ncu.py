"""Nsight Compute output -> the facts the Judge reads. The CSV below follows the layout of
`ncu --csv --metrics ...` (one row per kernel launch and metric, after ncu's own log lines)."""

from __future__ import annotations

from kagent.sandbox import ncu

NCU_CSV = '''==PROF== Connected to process 4242 (python)
==PROF== Profiling "relu_kernel": 0%....50%....100% - 1 pass
==PROF== Disconnected from process 4242
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","4242","python","127.0.0.1","relu_kernel(const float *, float *, long)","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","dram__throughput.avg.pct_of_peak_sustained_elapsed","%","88.41"
"0","4242","python","127.0.0.1","relu_kernel(const float *, float *, long)","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","us","9.73"
"0","4242","python","127.0.0.1","relu_kernel(const float *, float *, long)","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","launch__registers_per_thread","register/thread","16"
"0","4242","python","127.0.0.1","relu_kernel(const float *, float *, long)","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","sm__throughput.avg.pct_of_peak_sustained_elapsed","%","12.05"
"0","4242","python","127.0.0.1","relu_kernel(const float *, float *, long)","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","sm__warps_active.avg.pct_of_peak_sustained_active","%","81.9"
'''


def test_ncu_csv_becomes_one_line_per_kernel():
    kernels = ncu.parse(NCU_CSV)
    assert list(kernels) == ["relu_kernel(const float *, float *, long)"]
    facts = kernels["relu_kernel(const float *, float *, long)"]
    assert facts["duration"] == "9.73 us" and facts["DRAM throughput % of peak"] == "88.41"
    assert facts["registers/thread"] == "16 register/thread" and facts["achieved occupancy %"] == "81.9"
    line = ncu.summarize(kernels)
    assert line.startswith("relu_kernel") and "DRAM throughput % of peak 88.41" in line


def test_no_ncu_no_facts(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ncu.profile("task.py", "candidate.py") is None
    assert ncu.parse("==ERROR== no kernels were profiled") == {}
