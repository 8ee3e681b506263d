"""The import structure of ``vae_jax``: no cycles (imports inside functions included) and
arrows only downward through the layers of DESIGN.md, so a reader can learn the library
from the bottom up and a change to one layer cannot reach below it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.helpers.repo import REPO

PACKAGE = REPO / "vae_jax"

# The modules that moved into vae_jax/run/, by their old name under vae_jax.
OLD_PATHS = {
    "rundir": "run",
    "manifest": "run.manifest",
    "runtime": "run.runtime",
    "parallel": "run.parallel",
    "progress": "run.progress",
    "cli": "run.cli",
}
RUNDIR_MODULES = ("checkpointing", "directory", "files", "loading", "lock", "metrics_log",
                  "reports")  # fmt: skip

# Lowest first. A module may import its own layer and the layers below it; training and
# evaluation share a rank and must not import each other.
LAYERS = (
    ("core", ("errors", "core", "distributions")),  # distributions: the public alias
    ("model", ("model", "objectives", "optimizers", "train_state")),
    ("data", ("data",)),
    ("adapter", ("adapter", "hyperparameters", "config_checks")),
    ("run", ("run",)),  # run directory, manifest, runtime, cli, progress, devices
    ("training", ("training",)),
    ("evaluation", ("evaluation",)),
    ("runs", ("single_run", "reproduce", "sweep")),
    ("package", ("__init__",)),
    # The paths these modules had before vae_jax/run/, kept for outside code: each is the
    # module of vae_jax.run itself; nothing in the library imports them.
    ("old paths", tuple(OLD_PATHS)),
)  # fmt: skip
SIBLINGS = {"training": "evaluation", "evaluation": "training"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """Every ``vae_jax`` module that module ``name`` imports, anywhere in the file (a
    ``from package import submodule`` counts as the submodule)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imported_modules(name) for name in MODULES}


def layer_of(name: str) -> tuple[int, str]:
    parts = name.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    for rank, (layer, members) in enumerate(LAYERS):
        if key in members:
            return rank, layer
    raise AssertionError(f"{name} is in no layer of LAYERS; add it where it belongs")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_finder_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself: a cycle closed by an import inside a function is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": set()}
    assert find_cycle(graph) is None
    assert find_cycle({**graph, "c": {"a"}}) == ["a", "b", "c", "a"]
    # The parsing side: the old model.py imported data code inside make_vae.
    source = "def f():\n    from vae_jax.data import catalog\n"
    assert any(
        isinstance(node, ast.ImportFrom) and node.module == "vae_jax.data"
        for node in ast.walk(ast.parse(source))
    )
    assert (
        "vae_jax.training.step" in GRAPH["vae_jax.training.fit"] | GRAPH["vae_jax.training.trainer"]
    )


def test_vae_jax_has_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_the_layers(name):
    rank, layer = layer_of(name)
    for target in sorted(GRAPH[name]):
        target_rank, target_layer = layer_of(target)
        assert target_rank <= rank or target_layer == "package", (
            f"{name} ({layer}) imports {target} ({target_layer}), a layer above it"
        )
        assert SIBLINGS.get(layer) != target_layer, (
            f"{name} ({layer}) imports {target}: training and evaluation stay apart"
        )


def test_the_library_never_imports_experiments_or_tests():
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            for module in modules:
                assert module.split(".")[0] not in ("experiments", "tests", "conftest"), (
                    f"{name} imports {module}"
                )


def test_the_core_never_takes_a_config():
    """Core and model functions take keyword arguments (``make_vae(image_shape=...,
    **config.model)``); no parameter of theirs is a config or a config group."""
    below_data = {name for name in MODULES if layer_of(name)[1] in ("core", "model")}
    assert {"vae_jax.core.distributions.gaussian", "vae_jax.model.vae"} <= below_data
    for name in sorted(below_data):
        tree = ast.parse(MODULES[name].read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
                for arg in names:
                    message = f"{name}: a function takes {arg!r}"
                    assert not arg.endswith("config"), message


def test_the_core_imports_nothing_of_the_model():
    """``vae_jax/core`` is the lowest layer: pure JAX that knows no model part."""
    for name in MODULES:
        if name.startswith("vae_jax.core"):
            assert not {m for m in GRAPH[name] if m.startswith("vae_jax.model")}, name


# The bounds, the objectives, evaluation and diagnostics ask a part what it can do
# (capabilities, the latent contract), never what it is called or what class it is.
CAPABILITY_READERS = ("vae_jax.model.bounds", "vae_jax.objectives", "vae_jax.evaluation")
NAME_BRANCH = re.compile(
    r"isinstance\([^,]+,\s*\(?\s*(flows|distributions|hierarchy|priors|posteriors)\.|"
    r"isinstance\([^,]+,\s*\(?\s*\w*(Posterior|Prior|Gaussian|Mixture|Flow)\b|"
    r"\b(prior_name|posterior_name|posterior|prior)\s*(==|!=|\bin\b)\s*[\"'(]"
)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(CAPABILITY_READERS)))
def test_the_bounds_and_evaluation_never_branch_on_a_parts_name_or_type(name):
    for number, line in enumerate(MODULES[name].read_text().splitlines(), start=1):
        assert not NAME_BRANCH.search(line), f"{name}:{number}: {line.strip()}"


def test_the_name_branch_finder_sees_both_kinds():
    assert NAME_BRANCH.search("if isinstance(q, flows.IAFPosterior):")
    assert NAME_BRANCH.search('if vae.posterior_name != "gaussian":')
    assert NAME_BRANCH.search("isinstance(q, IAFPosterior)")
    assert not NAME_BRANCH.search("if vae.closed_form_kl:")
    assert not NAME_BRANCH.search("if isinstance(value, float):")


def test_the_public_imports_keep_working_after_the_move():
    """``vae_jax.distributions`` is the core's distributions under their old name."""
    import vae_jax
    import vae_jax.distributions as public
    from vae_jax.core import distributions as core

    assert public.DiagGaussian is core.DiagGaussian is vae_jax.distributions.DiagGaussian
    assert set(core.__all__) <= set(dir(public))
    for name in ("make_vae", "vae_from_config", "objectives", "load_run", "VAE", "rng"):
        assert hasattr(vae_jax, name), name


@pytest.mark.parametrize(
    ("old", "new"),
    [(f"vae_jax.{old}", f"vae_jax.{new}") for old, new in OLD_PATHS.items() if old != "rundir"]
    + [(f"vae_jax.rundir.{name}", f"vae_jax.run.{name}") for name in RUNDIR_MODULES],
)
def test_an_old_import_path_is_the_moved_module_itself(old, new):
    """Outside code that imports (or monkeypatches) a module by its path before
    vae_jax/run/ gets the one module, executed once (the absl flags of ``cli`` are
    defined once)."""
    import importlib

    moved = importlib.import_module(new)
    assert importlib.import_module(old) is moved
    assert moved.__name__ == new
    package, _, name = old.rpartition(".")
    assert getattr(importlib.import_module(package), name) is moved
    public = [n for n in vars(moved) if not n.startswith("_")]
    assert public, new
    for attribute in public:
        assert getattr(importlib.import_module(old), attribute) is getattr(moved, attribute)
