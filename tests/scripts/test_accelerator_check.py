"""The accelerator check, known to work before a device is lent: the bundle that travels
(scripts/build_accelerator_bundle.py) and the check itself (scripts/accelerator_check.sh)
run end to end on this CPU with the tiny preset."""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers.idx_data import write_idx_folder
from tests.helpers.repo import REPO, subprocess_env
from vae_jax.errors import DataError

ACCELERATOR_SECTIONS = (
    "accelerator_training",
    "accelerator_evaluation",
    "epoch_vs_loop",
    "seed_sweep",
    "deterministic_rerun",
)
# The tiny preset (scripts/benchmark.py ACCELERATOR_PRESETS["tiny"]), as this test reads it.
TINY_NUM_TRAIN, TINY_BATCH_SIZES, TINY_BOUND_SETTINGS, TINY_SEEDS = 2048, (128, 512), 1, 8


@pytest.fixture(scope="module")
def bundle_lib():
    """scripts/build_accelerator_bundle.py as a module (scripts/ is no package)."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        yield importlib.import_module("build_accelerator_bundle")
    finally:
        sys.path.remove(str(REPO / "scripts"))


def make_wheel(
    folder: Path, name: str, version: str, requires=(), *, extra_files=None, top_level=None
) -> Path:
    """A pure-Python wheel of one package ``name`` (``VERSION = version``) and
    ``extra_files`` ({path: text}), as pip installs it; its top_level.txt names ``top_level``
    (default: ``name``)."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        **(extra_files or {}),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{dist_info}/top_level.txt": "".join(f"{m}\n" for m in top_level or [name]),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def default_model_train_flops() -> int:
    """Matrix-product FLOPs of one training example of the default MLP VAE, from its widths
    (784-512-256-(2x20) encoder, 20-256-512-784 decoder): forward, weight gradients and
    input gradients, except the data's."""
    encoder = [(784, 512), (512, 256), (256, 40)]
    decoder = [(20, 256), (256, 512), (512, 784)]
    forward = sum(2 * i * o for i, o in encoder + decoder)
    return 3 * forward - 2 * 784 * 512


def fractions_of_matmul(tree) -> list[float]:
    """Every ``fraction_of_matmul`` anywhere in a JSON tree."""
    if isinstance(tree, dict):
        found = [tree["fraction_of_matmul"]] if "fraction_of_matmul" in tree else []
        return found + [f for value in tree.values() for f in fractions_of_matmul(value)]
    return []


def on_one_core() -> list[str]:
    """``taskset -c N``, one core of this process's, where taskset exists. On one core the
    reference product and the workloads share the machine's other load alike; on two, load
    from other processes slows the two-thread reference product by its straggling thread
    more than the small products of the workloads, and their fractions of it rose to 1.6
    here (load 9 on two cores)."""
    taskset = shutil.which("taskset")
    if taskset is None or not hasattr(os, "sched_getaffinity"):
        return []
    return [taskset, "-c", str(min(os.sched_getaffinity(0)))]


@pytest.mark.slow
def test_check_runs_end_to_end_on_this_cpu_with_the_tiny_preset(tmp_path):
    write_idx_folder(tmp_path / "idx", 600, 100)
    make_wheel(tmp_path / "wheels", "accelerator_probe", "1.0")
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    built = subprocess.run(
        [sys.executable, "scripts/build_accelerator_bundle.py", f"--bundle={bundle}",
         f"--idx_dir={tmp_path / 'idx'}", f"--wheel_dir={tmp_path / 'wheels'}"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    assert "MiB of 64 MiB" in built.stdout
    env = subprocess_env(
        OUT=str(out), PRESET="tiny", BUNDLE=str(bundle), PYTHON=sys.executable, JAX_PLATFORMS="cpu"
    )
    check = subprocess.run(
        [*on_one_core(), "bash", "scripts/accelerator_check.sh"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    log = (out / "accelerator_check.log").read_text()
    assert check.returncode == 0, log[-4000:]
    # The carried wheel was installed by the check (this venv does not have it) and imported.
    assert "installing 1 carried wheels" in log
    assert "verified carried accelerator-probe 1.0: imports accelerator_probe" in log

    results = json.loads((out / "accelerator_check.json").read_text())
    sections = results["sections"]
    assert results["accelerator"]["errors"] == {}
    assert results["accelerator"]["preset"] == "tiny"
    assert {"accelerator_reference", *ACCELERATOR_SECTIONS} <= set(sections)
    assert results["environment"]["backend"] == "cpu"
    assert results["environment"]["jax_settings"]["jax_default_matmul_precision"] == "highest"

    # Every rate is a fraction of the reference product, and a plausible one.
    fractions = fractions_of_matmul(sections)
    expected = 2 * len(TINY_BATCH_SIZES) + 2 * TINY_BOUND_SETTINGS + 2 + 1 + 2  # +map,vmap
    assert len(fractions) == expected
    assert all(0 < f < 1.5 for f in fractions), fractions
    reference = sections["accelerator_reference"]["gflops"]

    training = sections["accelerator_training"]
    assert set(training["runs"]) == {
        f"batch_{b}_{d}" for b in TINY_BATCH_SIZES for d in ("float32", "bfloat16")
    }
    for run in training["runs"].values():
        # the default model's FLOPs, counted here from its widths
        assert run["matmul_gflop_per_example"] * 1e9 == pytest.approx(default_model_train_flops())
        assert run["num_train"] == TINY_NUM_TRAIN
        assert run["steps"] == math.ceil(TINY_NUM_TRAIN / run["batch_size"])
        assert run["examples_per_second"] == pytest.approx(TINY_NUM_TRAIN / run["seconds"])
        achieved = default_model_train_flops() * run["examples_per_second"] / 1e9
        assert run["fraction_of_matmul"] == pytest.approx(
            achieved / reference[run["compute_dtype"]]
        )
    for b in TINY_BATCH_SIZES:
        assert training["bfloat16_over_float32"][f"batch_{b}"] == pytest.approx(
            training["runs"][f"batch_{b}_bfloat16"]["examples_per_second"]
            / training["runs"][f"batch_{b}_float32"]["examples_per_second"]
        )

    bounds = sections["accelerator_evaluation"]["runs"]
    assert {run["num_importance_samples"] for run in bounds.values()} == {5000}
    assert {run["compute_dtype"] for run in bounds.values()} == {"float32", "bfloat16"}

    # The loop runs the scan's step with the same keys: the same parameters up to fusions.
    loop = sections["epoch_vs_loop"]
    assert loop["steps"] == TINY_NUM_TRAIN // 128
    assert loop["parameters_max_relative_difference"] < 1e-5
    assert loop["loop_over_compiled_epoch"] == pytest.approx(
        loop["python_loop"]["seconds"] / loop["compiled_epoch"]["seconds"]
    )

    # map runs each seed's single-run arithmetic (promised bit for bit); vmap within float32.
    sweep = sections["seed_sweep"]
    assert sweep["num_seeds"] == TINY_SEEDS
    assert set(sweep["strategies"]) == {"map", "vmap"}
    assert sweep["strategies"]["map"]["seed_0_bit_identical_to_single"] is True
    # vmap batches the products, so float32 rounding differs and grows over the steps:
    # measured 1.5e-5 of a leaf's largest value on this CPU once the training draws changed
    # (dynamic binarization version 2), 2e-6 before; a wrong seed or key gives O(1).
    assert sweep["strategies"]["vmap"]["seed_0_max_relative_difference"] < 1e-4

    # The rerun is a fresh process with the flag recorded, compared bit for bit.
    rerun = sections["deterministic_rerun"]
    assert set(rerun) == {"with_flag"}
    assert rerun["with_flag"]["bit_identical"] is True
    assert rerun["with_flag"]["reproduce_says"].startswith("reproduced")
    assert "--xla_gpu_deterministic_ops=true" in rerun["with_flag"]["xla_flags_recorded"]

    summary = (out / "accelerator_summary.txt").read_text()
    for expected_line in (
        "accelerator check, preset tiny",
        "machine: cpu",
        "training batch_128_float32:",
        "K=5000 bound batch_2_chunk_100_bfloat16:",
        "compiled epoch against a Python loop of jitted steps (batch 128, 16 steps)",
        "8-seed sweep, map:",
        "rerun with flag (deterministic_gpu_ops=true): bit-identical",
    ):
        assert expected_line in summary, summary
    assert "FAILED" not in summary


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"OUT": ""}, "OUT is not set"),
        ({"PRESET": "h200"}, "PRESET=h200: expected gpu or tiny"),
        ({"BUNDLE": "/nonexistent/bundle"}, "/nonexistent/bundle/manifest.json not found"),
        ({"PYTHON": "/nonexistent/python"}, "PYTHON=/nonexistent/python: no such interpreter"),
    ],
    ids=["no_out", "unknown_preset", "no_bundle", "no_python"],
)
def test_check_refuses_bad_input_in_one_line_before_writing(tmp_path, variables, message):
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text("{}")
    out = tmp_path / "out"
    env = subprocess_env(OUT=str(out), BUNDLE=str(tmp_path / "bundle"), PYTHON=sys.executable)
    env.update(variables)
    result = subprocess.run(
        ["bash", "scripts/accelerator_check.sh"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"accelerator_check: error: {message}"), lines[0]
    assert not out.exists()


def test_requirements_follow_markers_specifiers_and_the_image(bundle_lib, tmp_path):
    needs = make_wheel(
        tmp_path,
        "needs",
        "1.0",
        requires=[
            "numpy>=1.0",  # in the image
            "probe_b>=2; python_version >= '3.8'",  # carried, at 2.1
            "missing-dep",  # nowhere
            "old-only; python_version < '3.10'",  # not on the image's 3.12
            "testing-only; extra == 'test'",  # an extra nobody asks for
            "windows-only; sys_platform == 'win32'",
        ],
    )
    probe_b = make_wheel(tmp_path, "probe_b", "2.1")
    wheels = {"needs": needs, "probe-b": probe_b}
    assert bundle_lib.unmet_requirements(wheels, frozenset({"numpy"})) == [
        "needs needs missing-dep: neither carried nor in the image"
    ]
    too_new = make_wheel(tmp_path / "other", "needs", "1.1", requires=["probe-b>=3"])
    assert bundle_lib.unmet_requirements({"needs": too_new, "probe-b": probe_b}) == [
        "needs needs probe-b>=3, carried: probe-b 2.1"
    ]


def test_two_wheels_of_one_package_are_refused(bundle_lib, tmp_path):
    first = make_wheel(tmp_path / "a", "Probe_B", "2.1")
    second = make_wheel(tmp_path / "b", "probe.b", "2.2")
    with pytest.raises(bundle_lib.BundleError, match=r"two wheels of probe-b: Probe_B-2\.1"):
        bundle_lib.one_wheel_per_package([first, second])


def test_carried_versions_are_the_pins_and_the_venvs(bundle_lib):
    """requirements.txt's pins, and for dependencies the versions the tests run with here;
    nothing carried that the image has (two versions would meet on the path there)."""
    pins = bundle_lib.carried_pins()
    requirements = (REPO / "requirements.txt").read_text()
    for name in bundle_lib.CARRIED_FROM_REQUIREMENTS:
        assert f"{name}=={pins[bundle_lib.canonical_name(name)]}" in requirements
    for name, version in bundle_lib.CARRIED_DEPENDENCIES.items():
        assert importlib.metadata.version(name) == version, name
    assert not set(pins) & bundle_lib.IMAGE_PACKAGES


def _build(bundle_lib, tmp_path, wheels, **kwargs):
    return bundle_lib.build(tmp_path / "bundle", tmp_path / "idx", tmp_path / wheels, **kwargs)


def test_bundle_records_its_files_and_a_refused_build_changes_nothing(bundle_lib, tmp_path):
    write_idx_folder(tmp_path / "idx", 20, 10)
    make_wheel(tmp_path / "wheels", "accelerator_probe", "1.0")
    record = _build(bundle_lib, tmp_path, "wheels")
    bundle = tmp_path / "bundle"
    for entry in [*record["wheels"], *record["data"]["files"]]:
        assert hashlib.sha256((bundle / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    idx_names = sorted(p.name for p in (tmp_path / "idx").iterdir())
    assert sorted(Path(f["file"]).name for f in record["data"]["files"]) == idx_names
    assert record["bundle_bytes"] == sum(
        entry["bytes"] for entry in [*record["wheels"], *record["data"]["files"]]
    )
    assert [(w["name"], w["version"]) for w in record["wheels"]] == [("accelerator-probe", "1.0")]
    before = (bundle / "manifest.json").read_bytes()

    make_wheel(tmp_path / "unmet", "accelerator_probe", "2.0", requires=["not-there"])
    with pytest.raises(bundle_lib.BundleError, match="not-there: neither carried nor"):
        _build(bundle_lib, tmp_path, "unmet")
    with pytest.raises(bundle_lib.BundleError, match=r"over the limit of 0 MiB"):
        _build(bundle_lib, tmp_path, "wheels", limit_bytes=1024)
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz"):
        _build(bundle_lib, tmp_path, "wheels")
    assert (bundle / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "idx", "unmet", "wheels"]


def test_verify_finds_each_carried_version_and_the_data_as_built(bundle_lib, tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "idx", 20, 10)
    wheel = make_wheel(tmp_path / "wheels", "accelerator_probe_v", "1.0")
    _build(bundle_lib, tmp_path, "wheels")
    bundle = tmp_path / "bundle"
    with pytest.raises(bundle_lib.BundleError, match=r"1\.0 was carried, but Python does not"):
        bundle_lib.verify(bundle)

    with zipfile.ZipFile(wheel) as archive:  # installed, as pip --target lays it out
        archive.extractall(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "carried accelerator-probe-v 1.0: imports accelerator_probe_v" in bundle_lib.verify(
        bundle
    )
    record = json.loads((bundle / "manifest.json").read_text())
    record["wheels"][0]["version"] = "2.0"
    (bundle / "manifest.json").write_text(json.dumps(record))
    with pytest.raises(bundle_lib.BundleError, match=r"2\.0 was carried, Python finds 1\.0"):
        bundle_lib.verify(bundle)
    (bundle / record["data"]["files"][0]["file"]).write_bytes(b"changed")
    with pytest.raises(bundle_lib.BundleError, match="sha256 differs"):
        bundle_lib.verify(bundle)


def test_verify_imports_the_modules_a_wheel_ships_not_those_top_level_txt_names(
    bundle_lib, tmp_path, monkeypatch
):
    """dm-tree 0.1.10's top_level.txt names ``_tree``, which its wheel no longer ships; a
    namespace package (no __init__.py, as googleapis-common-protos' ``google``) and a
    single-file module are modules too."""
    write_idx_folder(tmp_path / "idx", 20, 10)
    wheel = make_wheel(
        tmp_path / "wheels",
        "probe_pkg",
        "1.0",
        extra_files={"probe_namespace/inner/mod.py": "X = 1\n", "probe_single.py": "Y = 2\n"},
        top_level=["probe_pkg", "_probe_gone"],
    )
    _build(bundle_lib, tmp_path, "wheels")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert bundle_lib.top_level_modules(importlib.metadata.distribution("probe-pkg")) == [
        "probe_namespace",
        "probe_pkg",
        "probe_single",
    ]
    assert (
        "carried probe-pkg 1.0: imports probe_namespace, probe_pkg, probe_single"
        in bundle_lib.verify(tmp_path / "bundle")
    )
