"""The import graph of the installed packages (fastkd, fastkd.kernels, fastkd.pipelines), read from the source with
`ast`: which module imports which at import time, and which imports sit inside functions.

Layers, top to bottom; a module may import its own layer's modules (without a circle) and any layer below it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"fastkd": ROOT / "fastkd", "fastkd.kernels": ROOT / "kernels", "fastkd.pipelines": ROOT / "pipelines"}

LAYERS: tuple[tuple[str, ...], ...] = (
    ("fastkd.cli", "fastkd.__main__", "fastkd.api"),
    ("fastkd.runs", "fastkd.demo", "fastkd.reproduce", "fastkd.bench", "fastkd.reference"),
    ("fastkd.methods",),
    ("fastkd.engine", "fastkd.reference.keys", "fastkd.reference.errors"),
    ("fastkd.models",),
    ("fastkd.kernels", "fastkd.pipelines", "fastkd.data"),
    ("fastkd.config", "fastkd.plans", "fastkd.errors", "fastkd"),
)
"""cli/api -> runs/reproduce/bench/reference -> methods -> engine -> models -> kernels/pipelines/data -> config/plans/errors.
A module belongs to the layer of its longest listed prefix (`fastkd` itself: the package's version). The reference
checkpoints' key maps sit with the engine's checkpoints: `init_from` and the ViT offline teacher load through them."""

OPTIONAL_PACKAGES = {"wandb", "tensorboard", "torch.utils.tensorboard", "nvidia", "triton", "submitit", "sklearn",
                     "matplotlib"}
"""Imported inside the function that needs them: packages a run may lack, scikit-learn (only the `digits` data set
needs it; a slow import) and matplotlib (its Agg backend is chosen before pyplot is imported)."""

OPTIONAL_MODULES = {"fastkd.kernels._ema_triton", "fastkd.kernels._kd_triton", "fastkd.pipelines.dali_pipeline",
                    "fastkd.pipelines.dali_jpeg"}
"""fastkd modules that need an optional package (Triton, DALI) at import: imported where they are used."""

LAZY_LOADERS = {"fastkd.cli", "fastkd.__main__"}
"""Modules that import the rest of fastkd on use, so `fastkd --help` stays fast."""


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    in_function: bool


def module_files() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"{module} is in no layer"
    return best


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    # `from pkg import sub` imports the submodule pkg.sub when there is one.
    return [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]


def imports() -> list[Import]:
    """Every import statement of every module, but those under `if TYPE_CHECKING:` (never run)."""
    files = module_files()
    known = set(files)
    found = []
    for module, path in files.items():
        is_package = path.name == "__init__.py"

        def visit(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child):
                    for sub in child.orelse:
                        visit(sub, in_function)
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in _targets(child, module, is_package, known):
                        found.append(Import(module, target, child.lineno, in_function))
                    continue
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        visit(ast.parse(path.read_text()), False)
    return found


def internal_module(target: str, known: set[str]) -> str | None:
    """The fastkd module an import target names (a module, or a name inside one), else None."""
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def edges() -> dict[str, set[str]]:
    """Module -> the fastkd modules it imports when it is imported (a submodule import runs its packages' __init__
    too, but those are edges of their own)."""
    known = set(module_files())
    graph: dict[str, set[str]] = {m: set() for m in known}
    for imp in imports():
        target = internal_module(imp.target, known)
        if target is not None and not imp.in_function and target != imp.source:
            graph[imp.source].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def upward_imports() -> list[str]:
    known = set(module_files())
    bad = []
    for imp in imports():
        target = internal_module(imp.target, known)
        if target is not None and not imp.in_function and layer_of(target) < layer_of(imp.source):
            bad.append(f"{imp.source}:{imp.line} imports {target}")
    return bad


def function_level_imports() -> list[str]:
    known = set(module_files())
    bad = []
    for imp in imports():
        if not imp.in_function or imp.source in LAZY_LOADERS:
            continue
        internal = internal_module(imp.target, known)
        optional = any(imp.target == p or imp.target.startswith(p + ".") for p in OPTIONAL_PACKAGES)
        if internal in OPTIONAL_MODULES or (internal is None and optional):
            continue
        bad.append(f"{imp.source}:{imp.line} imports {imp.target} inside a function")
    return bad


if __name__ == "__main__":
    for title, lines in (("circles", [" -> ".join(c) for c in circles(edges())]), ("upward", upward_imports()),
                         ("function-level", function_level_imports())):
        print(f"== {title}: {len(lines)}")
        print("\n".join(lines))
