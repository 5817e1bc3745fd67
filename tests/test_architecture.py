"""The layout's rules, checked from the source: no import cycles among the modules of app/ and rewards/ (at module
level or inside functions; `if TYPE_CHECKING:` blocks excepted, they never run), no Gradio in the engine or the
rewards, and a registry where every training method has a recipe, a validation test and its charts."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "rewards")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports, wherever the import statement is (a name imported from a package is
    the submodule when one exists, else the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif base in known:
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    known = set(modules)
    return {name: imported_modules(path, name, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = walk(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = walk(node)
            if cycle:
                return cycle
    return None


def test_the_graph_reader_sees_function_level_imports_and_cycles():
    graph = import_graph()
    assert "app.engine.methods" in graph["app.engine.core.spec"]
    assert "app.engine.methods.dpo" in graph["app.engine.methods.kto"]  # imported inside extra_evaluation
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_engine_and_rewards_never_import_gradio():
    offenders = []
    for name, path in source_modules().items():
        if name.startswith(("app.engine", "rewards")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n == "gradio" or n.startswith("gradio.") for n in names):
                    offenders.append(name)
    assert offenders == []


# -- the method registry --------------------------------------------------------------------------------------------
from app.engine import methods  # noqa: E402
from app.engine.core.spec import RunSpec  # noqa: E402
from app.engine.presentation import charts  # noqa: E402

METHOD_KEYS = [m.key for m in methods.all()]


def test_the_registry_lists_every_method_module():
    assert METHOD_KEYS[:6] == ["sft", "dft", "grpo", "prefix_rft", "dpo", "kto"]
    assert RunSpec.__dataclass_fields__.keys() >= {m.section for m in methods.with_section()}


@pytest.mark.parametrize("key", METHOD_KEYS)
def test_every_method_has_a_recipe_that_validates(key):
    method = methods.get(key)
    recipe = ROOT / "recipes" / method.recipe
    assert recipe.is_file(), f"{key}: no recipe {recipe.name}"
    spec = RunSpec.load(recipe)
    assert spec.method == key
    spec.validate()  # files included: the recipe's data and rewards


@pytest.mark.parametrize("key", METHOD_KEYS)
def test_every_method_has_a_validation_test(key):
    """Somewhere in tests/, a test builds a spec of this method and expects a SpecError from its checks."""
    method = methods.get(key)
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py"))
    section = method.section or "training"
    assert f'"{key}"' in sources and (f"{section}." in sources or f'"{section}"' in sources)
    defaults = RunSpec.from_dict(method.defaults(gpu=False))
    assert defaults.method == key


@pytest.mark.parametrize("key", METHOD_KEYS)
def test_every_method_has_its_chart_panels(key):
    method = methods.get(key)
    record = {"step": 1, **{metric: 0.5 for metric in method.charts.metrics()}, "reward": 0.5, "loss": 0.5}
    figs = charts.dashboard([record, {**record, "step": 2}], key)
    assert figs["reward"].data, f"{key}: the main chart draws nothing from its own metrics"
    assert len(figs["dynamics"].data) >= 4
    assert (figs["method"] is not None) == bool(method.charts.extra)


# -- the public API --------------------------------------------------------------------------------------------------
def test_every_public_name_resolves():
    import app.engine as engine

    for name in engine.__all__:
        assert getattr(engine, name) is not None, name


def test_readme_and_notebooks_use_only_the_public_api():
    import json
    import re

    texts = [(ROOT / "README.md").read_text(encoding="utf-8")]
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        texts += ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    deep = [m for text in texts for m in re.findall(r"from app\.engine\.[\w.]+ import [^\n]+", text)]
    assert deep == [], f"import these from app.engine instead: {deep}"
