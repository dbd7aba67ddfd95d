"""The shape of the code, checked: layers import only the layers above them, no import cycle, no
function longer than a screen, and the option tables that CLIs, validation and tests read agree."""

import ast

from conftest import ROOT

# docs/architecture.md's layers, top to bottom: a module imports only modules of its own layer or above.
LAYERS = [
    (
        "keras_cnn.errors",
        "keras_cnn.rules",
        "keras_cnn.quiet",
        "keras_cnn.smoke",
        "keras_cnn.console",
        "keras_cnn.cache",
        "keras_cnn.io",
        "keras_cnn.hardware",
        "keras_cnn.plots",
        "keras_cnn.checkpoints",
        "keras_cnn.interrupts",
    ),
    ("keras_cnn.kernels",),
    ("keras_cnn.models",),
    ("keras_cnn.optimizers",),
    ("keras_cnn.config", "keras_cnn.presets"),
    ("keras_cnn.data",),
    ("keras_cnn.run_dir",),
    ("keras_cnn.training",),
    ("keras_cnn.deploy",),
    (
        "keras_cnn.diagnostics",
        "keras_cnn.export",
        "keras_cnn.evaluation",
        "keras_cnn.perf",
        "keras_cnn.reports",
        "keras_cnn.visualize",
    ),
    ("keras_cnn.tracking",),
    ("keras_cnn",),
    ("keras_cnn.cli",),
    ("tuning",),
]
MAX_FUNCTION_LINES = 60


def _modules():
    out = {}
    for package in ("keras_cnn", "tuning"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path, modules):
    """Every keras_cnn/tuning module `path` imports, at any depth (an import inside a function counts)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules}


def _layer(module):
    best = None
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer of LAYERS (add it, and to docs/architecture.md)"
    return best[0]


def test_layers_import_only_upward_and_nothing_cycles():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    upward = [
        f"{m} -> {d}" for m, deps in graph.items() for d in deps if _layer(d) > _layer(m) and not m.startswith(d + ".")
    ]  # a package's __init__ may re-export its own
    assert upward == []
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph[m]):
            if m.startswith(d + ".") or d.startswith(m + ".") and m in ("keras_cnn", "tuning"):
                continue  # a module importing its package (or the package re-exporting it) is not a cycle
            if state.get(d) == "open":
                cycles.append(" -> ".join(stack[stack.index(d) :] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []
