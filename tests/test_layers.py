"""The library's folders are layers: a module imports only from its own layer or the ones below it."""

import ast
from pathlib import Path

import leeroo_lib

LIB = Path(leeroo_lib.__file__).parent
# lowest first; config and validation are read by every layer
LAYERS = ["config", "validation", "data", "experts", "routing", "evaluation", "serving", "cli", "runs"]


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def _imports(path: Path, module: str):
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("leeroo_lib."):
                yield node.module


def test_every_module_sits_in_a_layer_and_imports_none_above_it():
    upward = []
    for path in sorted(LIB.rglob("*.py")):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module == "leeroo_lib":
            continue
        assert module.split(".")[1] in LAYERS, f"{path} is in no layer of {LAYERS}"
        upward += [f"{module} imports {target}" for target in _imports(path, module) if _layer(target) > _layer(module)]
    assert not upward, upward


def test_no_two_modules_import_each_other_even_inside_a_function():
    graph = {}
    for path in sorted(LIB.rglob("*.py")):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[module] = set(_imports(path, module))
    cycles = sorted(f"{a} <-> {b}" for a, targets in graph.items() for b in targets if a < b and a in graph.get(b, ()))
    assert not cycles, cycles
