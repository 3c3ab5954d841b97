"""The package's layering (ARCHITECTURE.md, "Layers"), read from the source with ``ast``.

Every ``import`` and ``from ... import`` counts, at module level or inside a function.
``from pkg import name`` is an import of the submodule ``pkg.name`` when that module exists,
else of ``pkg`` itself; relative imports are resolved against the importing module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jaxnets.registry

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("jaxnets", "experiments", "benchmarks")  # the files whose imports are checked

# The engine and top layers, which the models layer must never import.
ABOVE_MODELS = (
    "jaxnets.train",
    "jaxnets.experiment",
    "jaxnets.cli",
    "jaxnets.launch",
    "jaxnets.gradcheck",
    "jaxnets.diagnostics",
    "jaxnets.checkpoint",
    "jaxnets.distributed",
)

# Import cycles that stay, each inside one subpackage, with the reason.
ALLOWED_CYCLES = {
    frozenset({"jaxnets.autodiff.core", "jaxnets.autodiff.ops"}): (
        "the teaching autodiff engine follows Autodidact's design: ops builds its primitives "
        "from core's Primitive, and core's Node operators (x + y, x @ y) call those primitives; "
        "core imports ops at its end, after Primitive and Node exist (core.py says so)"
    ),
}

# The public API of NamedTuples, whose names start with an underscore.
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(module: str) -> bool:
    return (ROOT / module.replace(".", "/") / "__init__.py").exists()


def exists(module: str) -> bool:
    path = ROOT / module.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports_of(module: str, tree: ast.Module) -> list[tuple[str, list[str], int]]:
    """``(imported module, names taken from it, line)`` for every import of this repository's
    packages in ``tree``, the parsed source of ``module``."""
    here = module if is_package(module) else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*anchor, *filter(None, [base])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if exists(sub):
                    found.append((sub, [], node.lineno))
                else:
                    found.append((base, [alias.name], node.lineno))
    return [(m, names, line) for m, names, line in found if m.split(".")[0] in SOURCES]


def defined_names(tree: ast.Module) -> set[str]:
    """Every name a module binds: functions, classes, variables, attributes it assigns
    (``self._x = ...``, ``object.__setattr__(self, "_x", ...)``) and imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("setattr__"):
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                names.add(node.args[1].value)
    return names


TREES = {
    module_name(p): ast.parse(p.read_text(), str(p))
    for source in SOURCES
    for p in sorted((ROOT / source).rglob("*.py"))
}
IMPORTS = {m: imports_of(m, tree) for m, tree in TREES.items()}
PACKAGE = {m: imports for m, imports in IMPORTS.items() if m.split(".")[0] == "jaxnets"}


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_is_read_from_the_source():
    # guards the parser itself: edges known to exist must be found
    assert ("jaxnets.registry", ["register_model"]) in [
        (m, names) for m, names, _ in PACKAGE["jaxnets.models.mlp"]
    ]
    assert "jaxnets.models" in [m for m, _, _ in PACKAGE["jaxnets"]]
    assert "jaxnets.train.step" in [m for m, _, _ in PACKAGE["jaxnets.train"]]
    assert "jaxnets.losses" in [m for m, _, _ in PACKAGE["jaxnets.gradcheck"]]  # in a function
    assert "jaxnets.autodiff.ops" in [m for m, _, _ in PACKAGE["jaxnets.autodiff.core"]]
    assert "benchmarks.common" in [m for m, _, _ in IMPORTS["benchmarks.mlp"]]


def test_models_import_nothing_from_the_engine_or_top_layers():
    offending = [
        f"{module} imports {target} (line {line})"
        for module, imports in PACKAGE.items()
        if within(module, "jaxnets.models")
        for target, _, line in imports
        if any(within(target, layer) for layer in ABOVE_MODELS)
    ]
    assert not offending, "the models layer reaches up: " + "; ".join(offending)


def test_registry_imports_no_model_module():
    offending = [
        f"jaxnets.registry imports {target} (line {line})"
        for target, _, line in PACKAGE["jaxnets.registry"]
        if within(target, "jaxnets.models")
    ]
    assert not offending, "; ".join(offending) + ": the model families register themselves"


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per back edge of a
    depth-first search."""
    cycles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycles():
    # a package's __init__ importing its own submodules is how a package exposes them
    graph = {
        module: {
            target
            for target, _, _ in imports
            if target in PACKAGE and not (is_package(module) and within(target, module))
        }
        for module, imports in PACKAGE.items()
    }
    cycles = find_cycles(graph)
    offending = [" -> ".join(c) for c in cycles if frozenset(c) not in ALLOWED_CYCLES]
    assert not offending, "import cycles: " + "; ".join(offending)
    stale = set(ALLOWED_CYCLES) - {frozenset(c) for c in cycles}
    assert not stale, f"allowed cycles that no longer exist (remove them): {stale}"


def test_find_cycles_reports_each_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_a_private_name_of_another():
    # a private (_name) module is private to its package: its siblings may use it
    offending = []
    for module, imports in IMPORTS.items():
        package = module if is_package(module) else module.rpartition(".")[0]
        for target, names, line in imports:
            private = [n for n in names if n.startswith("_")]
            if private and target != module:
                taken = ", ".join(private)
                offending.append(f"{module} imports {taken} from {target} (line {line})")
            parts = target.split(".")
            for depth, part in enumerate(parts):
                if part.startswith("_") and not within(package, ".".join(parts[:depth])):
                    offending.append(f"{module} imports the private module {target} (line {line})")
    assert not offending, "; ".join(offending)


def test_no_module_uses_a_private_attribute_it_does_not_define():
    # obj._name where no code of this module defines _name: another module's private method
    # or attribute (a NamedTuple's _replace is public API)
    offending = []
    for module, tree in TREES.items():
        own = defined_names(tree) | NAMEDTUPLE_API
        for node in ast.walk(tree):
            name = getattr(node, "attr", "")
            if name.startswith("_") and not name.startswith("__") and name not in own:
                offending.append(f"{module} line {node.lineno}: {ast.unparse(node)}")
    assert not offending, "; ".join(offending)


def test_lookups_work_after_importing_the_registry_alone():
    # importing jaxnets.registry runs jaxnets/__init__.py, which imports the model families
    names = jaxnets.registry.list_models()
    assert {"mlp", "lenet5", "lstm_classifier", "nice", "wavenet"} <= set(names)
    model = jaxnets.registry.create_model("mlp", hidden=(3,), num_outputs=2)
    assert (model.hidden, model.num_outputs, model.activation) == ((3,), 2, "relu")
    assert jaxnets.registry.model_card("mlp").module == "jaxnets.models.mlp.MLP"
