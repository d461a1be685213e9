"""Documentation a newcomer can trust: at least 90% of the public functions, classes and
methods of public classes in agent/ and sandbox/ carry a docstring (counted with ast, so
nothing is imported)."""

from __future__ import annotations

import ast

from conftest import ROOT

THRESHOLD = 0.90


def public_definitions(folder: str) -> list[tuple[str, bool]]:
    """(file:line name, has a docstring) for every public def and class under `folder`, methods
    of public classes included; names starting with `_` are private."""
    found = []

    def walk(body, path, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                found.append((f"{path}:{node.lineno} {prefix}{node.name}", ast.get_docstring(node) is not None))
                if isinstance(node, ast.ClassDef):
                    walk(node.body, path, f"{prefix}{node.name}.")

    for path in sorted((ROOT / folder).rglob("*.py")):
        walk(ast.parse(path.read_text()).body, path.relative_to(ROOT), "")
    return found


def test_public_definitions_are_documented():
    found = public_definitions("agent") + public_definitions("sandbox")
    assert len(found) > 300  # the walk itself finds what it should
    missing = [name for name, documented in found if not documented]
    coverage = 1 - len(missing) / len(found)
    assert coverage >= THRESHOLD, f"{coverage:.1%} documented; without a docstring:\n" + "\n".join(missing)


def test_the_seam_interfaces_are_documented():
    """The interfaces a newcomer extends first say what they take, give and raise."""
    found = dict(public_definitions("agent") + public_definitions("sandbox"))
    for name in ("Provider", "Provider.complete", "Archive", "Archive.open", "Verdict", "Run", "Run.run"):
        assert any(key.endswith(f" {name}") and documented for key, documented in found.items()), name
