"""kagent: an LLM agent that writes fast kernels, judged by an honest sandbox.

The repository keeps its folders at the root (`agent/`, `sandbox/`, `prompts/`); they install
as the subpackages `kagent.agent`, `kagent.sandbox` and `kagent.prompts` (pyproject.toml).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kagent")
except PackageNotFoundError:  # imported from a tree that was never installed
    __version__ = "0+unknown"
