"""The built wheel, not the editable install: every package folder and prompt file of the source
tree is in it, under the one import package `kagent`, and the installed CLI judges a kernel from a
directory outside the source tree (the editable install and the rest of the suite would hide a
module left out of the wheel)."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from conftest import CANDIDATES, ROOT, TASKS

# What a fresh clone has but a build must not see: local builds, environments, caches.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__",
                                    ".pytest_cache")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel as a user would (`pip wheel --no-deps .`), from a clean copy of the tree
    so that a stale build/ folder cannot smuggle a module in."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    # With build isolation, as a user's pip builds it: the setuptools pyproject asks for, not the
    # environment's (a fresh venv's may be older).
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (built,) = (tmp / "dist").glob("kagent-*.whl")
    return built


def source_files() -> dict[str, Path]:
    """Each file the wheel must hold, by its path inside the wheel, read from pyproject's
    package-dir map: every file under each mapped folder (modules, prompts, knowledge guides,
    probe sources), whatever its suffix or depth, except caches."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    expected: dict[str, Path] = {}
    for package, folder in config["package-dir"].items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                inside = path.relative_to(ROOT / folder)
                expected["/".join((*package.split("."), *inside.parts))] = path
    return expected


def test_wheel_holds_every_package_and_prompt_under_kagent(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = source_files()
    assert {"kagent/agent/providers/replay.py", "kagent/agent/executors/local.py", "kagent/prompts/coder.md",
            "kagent/sandbox/backends/cpp.py",
            "kagent/prompts/knowledge/index.toml", "kagent/sandbox/cpu_probe.cpp"} <= set(expected)  # the walk itself finds what it should
    missing = sorted(set(expected) - names)
    assert not missing, f"left out of the wheel: {missing}"
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"kagent"}  # no generic top-level `agent`, `sandbox` or `prompts`


def test_installed_wheel_runs_outside_the_source_tree(wheel, tmp_path):
    """Install the wheel into a fresh venv and run its `kagent eval` from an unrelated directory.
    The venv borrows this environment's dependencies (torch...) through a .pth path line, which
    does not run the editable install's import hook: a module missing from the wheel fails."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    (fresh_site,) = {Path(p) for p in env_dir.glob("lib/python*/site-packages")}
    (fresh_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    python = env_dir / "bin" / "python"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(TASKS / "01_relu.py", elsewhere / "task.py")
    shutil.copy(CANDIDATES / "01_relu" / "cpp.py", elsewhere / "kernel.py")
    where = subprocess.run([python, "-c", "import kagent; print(kagent.__file__)"],
                           capture_output=True, text=True, cwd=elsewhere, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(fresh_site), where.stdout + where.stderr[-2000:]
    proc = subprocess.run([env_dir / "bin" / "kagent", "eval", "task.py", "kernel.py", "--json"],
                          capture_output=True, text=True, cwd=elsewhere, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert json.loads(proc.stdout)["status"] == "correct"
