"""How intake/ and message/ import each other: the render pool never imports the producer
(it builds with what it is handed), no cycle among their modules, and no private
(underscore) name taken from another module. Read from the source with ``ast``, so an
import under ``if TYPE_CHECKING:`` or inside a function counts too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import mailspool

PACKAGE = Path(mailspool.__file__).resolve().parent
CHECKED = ("mailspool.intake", "mailspool.message")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _base(node: ast.ImportFrom, importer: str) -> str:
    """The absolute module of ``from X import ...``, relative forms resolved."""
    if not node.level:
        return node.module or ""
    package = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports(module: str) -> Iterator[tuple[str, str | None]]:
    """(imported module, name taken from it or None) for every import in the module; a
    name that is itself a submodule counts as an import of that submodule."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = _base(node, module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub, None) if sub in MODULES else (base, alias.name)


def edges(module: str) -> set[str]:
    """The project's modules this module imports."""
    return {target for target, _ in imports(module) if target in MODULES}


def closure(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        for target in edges(todo.pop()) - seen:
            seen.add(target)
            todo.append(target)
    return seen


def checked(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in CHECKED)


def test_the_render_pool_does_not_import_the_producer() -> None:
    assert "mailspool.intake.pool" in MODULES and "mailspool.intake.producer" in MODULES
    assert "mailspool.intake.producer" not in closure("mailspool.intake.pool")


def test_no_import_cycle_in_intake_and_message() -> None:
    graph = {m: {t for t in edges(m) if checked(t)} for m in MODULES if checked(m)}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_private_name_is_imported_from_another_module() -> None:
    taken = [
        f"{module} takes {name} from {source}"
        for module in sorted(MODULES)
        if checked(module)
        for source, name in imports(module)
        if name is not None and name.startswith("_") and source != module
    ]
    assert taken == []
