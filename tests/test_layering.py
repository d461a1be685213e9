"""The layering the architecture promises (docs/architecture.md): `agent/` reaches the sandbox
only through its public surface (`kagent.sandbox`, sandbox/__init__.py), and the sandbox never
imports the agent."""

import ast
from pathlib import Path

import kagent.sandbox
from conftest import ROOT


def imports(folder: str) -> list[tuple[str, int, str, list[str]]]:
    """(file, line, module, names) for every `import` / `from ... import` under `folder`."""
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((str(path.relative_to(ROOT)), node.lineno, node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), node.lineno, a.name, []) for a in node.names]
    return found


def test_agent_uses_only_the_sandbox_public_surface():
    surface = set(kagent.sandbox.__all__)
    wrong = [f"{file}:{line}: {module} {names}" for file, line, module, names in imports("agent")
             if module.startswith("kagent.sandbox.") or (module == "kagent.sandbox" and not set(names) <= surface)]
    assert not wrong, "agent/ reaches past kagent.sandbox's public surface:\n" + "\n".join(wrong)


def test_every_public_name_resolves():
    for name in kagent.sandbox.__all__:
        assert getattr(kagent.sandbox, name) is not None, name


def test_the_sandbox_never_imports_the_agent():
    wrong = [f"{file}:{line}: {module}" for file, line, module, _ in imports("sandbox") if module.startswith("kagent.agent")]
    assert not wrong, wrong
