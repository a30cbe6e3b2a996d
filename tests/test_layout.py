"""The layout holds: few modules at the top of the package, no private name taken from
another module, tests in folders that mirror it, and no test module importing another
(shared code lives in tests/support). Import cycles and layers: lint-imports (make check)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT

PACKAGE = ROOT / "src" / "mailspool"
TESTS = ROOT / "tests"
# test folders that are not named after a package folder (inbound/data: test material;
# ui: the dashboard, api/dashboard, in a browser)
OWN_FOLDERS = {"support", "security", "e2e", "queue/backends", "inbound/data", "ui"}


def test_at_most_ten_modules_at_the_top_of_the_package() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 10, top


def test_test_folders_mirror_the_package() -> None:
    for folder in TESTS.rglob("*"):
        if not folder.is_dir() or folder.name == "__pycache__":
            continue
        rel = folder.relative_to(TESTS)
        if any(rel.as_posix() == f or rel.as_posix().startswith(f + "/") for f in OWN_FOLDERS):
            continue
        assert (PACKAGE / rel).is_dir(), f"tests/{rel} has no src/mailspool/{rel} to mirror"


def private_imports(path: Path, module: str) -> list[str]:
    """``from X import _name`` in ``path`` (module ``module``) where X is another module
    of the package: a private name taken across modules."""
    package = module.rpartition(".")[0] if path.name != "__init__.py" else module
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if not source.startswith("mailspool") or source == module:
            continue
        found += [
            f"{module} imports {source}.{a.name}"
            for a in node.names
            if a.name.startswith("_") and not a.name.startswith("__")
        ]
    return found


def test_no_module_takes_a_private_name_from_another() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        offenders += private_imports(path, module)
    assert not offenders, offenders


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from mailspool.queue.redis.encoding import _meta\nfrom .worker import _x\n")
    assert private_imports(probe, "mailspool.delivery.probe") == [
        "mailspool.delivery.probe imports mailspool.queue.redis.encoding._meta",
        "mailspool.delivery.probe imports mailspool.delivery.worker._x",
    ]


def imported(path: Path, package: str) -> set[str]:
    """The modules ``path`` (a module of ``package``) imports from the tests package, as
    dotted names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n == "tests" or n.startswith("tests.")}


def test_no_test_module_imports_another_or_conftest() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        package = ".".join(path.relative_to(ROOT).parts[:-1])
        for name in imported(path, package):
            last = name.rsplit(".", 1)[-1]
            if last.startswith("test_") or last == "conftest":
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_the_check_sees_a_test_module_import(tmp_path: Path) -> None:
    # the check above must be able to fail: an import of a test module is found
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from .test_queue_contract import make_job\nfrom ..conftest import x\n"
        "from tests.api import test_api\n"
    )
    assert imported(probe, "tests.queue") >= {
        "tests.queue.test_queue_contract",
        "tests.conftest",
        "tests.api.test_api",
    }
