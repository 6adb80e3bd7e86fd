"""Every distribution the provider's code imports is declared in pyproject.toml: the required ones in
``dependencies``, the optional ones in an extra and imported only inside the function that needs them (so a
DAG file never pays for them, and a missing extra fails with the function's message, not at import).

The oracle is the code itself (every ``import`` statement, read with ``ast``) and the installed
distributions' metadata: a new import of an undeclared package fails here, not on a user's machine.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "airflow_provider_cfbilling"
SIMULATOR = PACKAGE / "testing"  # standard library only (test_simulator.py proves it)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {_name(r) for r in project["dependencies"]}
    optional = {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    return required, optional


def _imports() -> list[tuple[str, str, bool]]:
    """(module imported, where, at module level?) for every import outside the standard library and the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                if module.split(".")[0] in sys.stdlib_module_names or module.startswith("airflow_provider_cfbilling"):
                    continue
                found.append((module, f"{path.relative_to(ROOT)}:{node.lineno}", id(node) in top_level))
    return found


def _distribution(module: str) -> str:
    """The distribution that ships ``module``: Airflow's providers are distributions of their own."""
    parts = module.split(".")
    if parts[:2] == ["airflow", "providers"]:
        provider = parts[2:4] if parts[2] == "common" else parts[2:3]
        return "apache-airflow-providers-" + "-".join(provider).replace("_", "-")
    if parts[0] == "airflow":
        return "apache-airflow"
    (distribution, *_) = importlib.metadata.packages_distributions()[parts[0]]
    return distribution.lower().replace("_", "-")


def test_every_imported_distribution_is_declared_and_optional_ones_are_imported_lazily():
    required, optional = _declared()
    undeclared, eager_optional = [], []
    for module, where, at_module_level in _imports():
        distribution = _distribution(module)
        if distribution in required:
            continue
        if distribution not in optional:
            undeclared.append(f"{where}: {module} ({distribution})")
        elif at_module_level:
            eager_optional.append(f"{where}: {module} ({distribution}, an extra)")
    assert not undeclared, "imported but not declared in pyproject.toml:\n" + "\n".join(undeclared)
    assert not eager_optional, "an extra imported at module level:\n" + "\n".join(eager_optional)


def test_the_scan_sees_the_imports_it_must_judge():
    """Guards the test above against reading nothing: the imports it exists for are found."""
    modules = {module for module, _, _ in _imports()}
    assert {"requests", "tenacity", "ijson", "pendulum", "fsspec.implementations.local", "pyarrow"} <= modules
    assert _distribution("airflow.providers.standard.triggers.temporal") == "apache-airflow-providers-standard"
    assert _distribution("airflow.providers.common.compat.openlineage.facet") == (
        "apache-airflow-providers-common-compat"
    )


def test_user_facing_text_speaks_of_cloudflares_documented_api_only():
    """Users have Cloudflare's API docs, not the project's internal documents: no message, form text, docstring
    or page may send them to "the brief" (the first product notes, whose endpoint Cloudflare no longer documents)."""
    shipped = [*PACKAGE.rglob("*.py"), *(ROOT / "docs").rglob("*.md"), *(ROOT / "example_dags").rglob("*.py")]
    shipped += [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    mentions = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in shipped
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bbrief\b", line, re.IGNORECASE)
    ]
    assert len(shipped) > 40 and not mentions, "\n".join(mentions)
