"""The folder that travels to a lent GPU machine beside the working tree, and its check there.

A lent machine's image has jax (with CUDA), flax, optax, orbax-checkpoint, numpy, scipy,
matplotlib, absl-py, ... but not the rest of requirements.txt, and it cannot download
anything. This builds ``.accelerator/`` (ignored by git) with what it lacks:

* ``wheels/``: the packages of requirements.txt that the image lacks (ml_collections,
  tensorflow-datasets, importlib_resources, tensorboardX), at the versions pinned there,
  and the dependencies of those that the image lacks (CARRIED_DEPENDENCIES, at the versions
  the project's venv resolved), all for the image's Python (3.12, manylinux x86_64);
* ``fashion-mnist/``: the Fashion-MNIST IDX files (Debian's dataset-fashion-mnist), checked,
  which ``scripts/accelerator_check.sh`` ingests there with ``scripts/prepare_data.py``;
* ``manifest.json``: every file with its sha256 and size, the versions, the sizes.

    python scripts/build_accelerator_bundle.py                    # wheels from PyPI
    python scripts/build_accelerator_bundle.py --wheel_dir=DIR    # wheels from a folder
    python scripts/build_accelerator_bundle.py --verify --bundle=DIR   # on the machine

Before anything is replaced, the build refuses (one line) a requirement of a carried wheel
that is neither carried nor in IMAGE_PACKAGES, two versions of one package, a carried
version that another carried wheel excludes, bad IDX files, and a working tree that would
travel above the device's 64 MiB (tracked and untracked files that git does not ignore,
plus this folder). It prints the sizes; a refused build leaves the previous folder as it
was. ``--verify``, run there after the wheels are installed, checks the data's checksums,
that Python finds each carried package at its carried version and imports its modules, and
imports what the check needs.
"""

from __future__ import annotations

import email.parser
import hashlib
import importlib
import importlib.machinery
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from absl import flags

from vae_jax.data import catalog, idx, ingest
from vae_jax.errors import UserFacingError
from vae_jax.run import cli, manifest

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20
TRAVEL_LIMIT_BYTES = 64 * MIB  # the device tool's limit on what travels with a call
DATA_FOLDER = "fashion-mnist"
WHEEL_FOLDER = "wheels"
MANIFEST = "manifest.json"

# requirements.txt pins that the image lacks (its jax, flax, optax, orbax, numpy, scipy,
# matplotlib, absl-py and tqdm are used as they are there).
CARRIED_FROM_REQUIREMENTS = (
    "ml_collections",
    "tensorflow-datasets",
    "importlib_resources",
    "tensorboardX",
)
# What those need at import and that the image lacks, at the versions pip resolved for the
# project's venv from requirements.txt (the versions the tests pass with).
CARRIED_DEPENDENCIES = {
    "array-record": "0.8.6",
    "dm-tree": "0.1.10",
    "docstring-parser": "0.18.0",
    "googleapis-common-protos": "1.76.0",
    "immutabledict": "4.3.1",
    "promise": "2.3",
    "simple-parsing": "0.1.9",
    "tensorflow-metadata": "1.21.0",
    "termcolor": "3.3.0",
    "toml": "0.10.2",
}
# Published as source only, pure Python: built into a py3-none-any wheel here.
SOURCE_ONLY = frozenset({"promise"})

# The image's Python packages as the device notes list them (read on such a machine on
# 2026-11-17); a requirement met by one of these is not carried.
IMAGE_PACKAGES = frozenset(
    """
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
    botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
    coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
    diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
    frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
    hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
    jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
    linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl
    meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
    narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti
    nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile
    nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
    nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime
    onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
    orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
    prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
    pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
    pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich
    sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
    sentencepiece sentence-transformers setuptools shellingham simplejson six
    sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
    tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
    torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
    typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt
    xarray xxhash yarl zipp
    """.split()
)
# The image's Python and platform, for pip's choice of wheels and for markers.
PYTHON_VERSION = "3.12"
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
MARKER_ENVIRONMENT = {
    "python_version": PYTHON_VERSION,
    "python_full_version": f"{PYTHON_VERSION}.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "extra": "",
}
# What the accelerator check imports, beside the carried packages' own modules.
CHECK_IMPORTS = (
    "jax",
    "flax",
    "optax",
    "orbax.checkpoint",
    "ml_collections",
    "tensorflow_datasets",
    "tensorboardX",
    "vae_jax.single_run",
    "vae_jax.reproduce",
    "experiments.configs.fashion_mlp",
)

_BUNDLE = flags.DEFINE_string("bundle", str(REPO / ".accelerator"), "The folder to build.")
_IDX_DIR = flags.DEFINE_string(
    "idx_dir", catalog.DEBIAN_FASHION_MNIST_DIR, "Folder of the Fashion-MNIST IDX files."
)
_WHEEL_DIR = flags.DEFINE_string(
    "wheel_dir", None, "Carry the wheels of this folder instead of downloading the pinned set."
)
_VERIFY = flags.DEFINE_bool(
    "verify", False, "Check an installed bundle (on the machine) instead of building one."
)


class BundleError(UserFacingError):
    """A bundle that cannot be built or does not match what is installed."""


def canonical_name(name: str) -> str:
    """PEP 503's normalized project name: ``tensorflow_datasets`` -> ``tensorflow-datasets``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(requirements: Path, names) -> dict[str, str]:
    """``{canonical name: version}`` of ``names`` from ``name==version`` lines."""
    pinned = {}
    for line in requirements.read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if "==" in spec:
            name, version = (part.strip() for part in spec.split("==", 1))
            pinned[canonical_name(name)] = version
    missing = [name for name in names if canonical_name(name) not in pinned]
    if missing:
        raise BundleError(f"{requirements}: no name==version pin for {', '.join(missing)}")
    return {canonical_name(name): pinned[canonical_name(name)] for name in names}


def carried_pins(requirements: Path = REPO / "requirements.txt") -> dict[str, str]:
    """Every carried package and its exact version."""
    return {**requirement_pins(requirements, CARRIED_FROM_REQUIREMENTS), **CARRIED_DEPENDENCIES}


def wheel_name_and_version(wheel: Path) -> tuple[str, str]:
    """``(canonical name, version)`` from a wheel's file name (PEP 427)."""
    parts = wheel.name[: -len(".whl")].split("-")
    if not wheel.name.endswith(".whl") or len(parts) not in (5, 6):
        raise BundleError(f"{wheel}: not a wheel file name (name-version-python-abi-platform.whl)")
    return canonical_name(parts[0]), parts[1]


def wheel_requirements(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        if len(metadata) != 1:
            raise BundleError(f"{wheel}: {len(metadata)} .dist-info/METADATA files, expected 1")
        text = archive.read(metadata[0]).decode("utf-8")
    return email.parser.Parser().parsestr(text).get_all("Requires-Dist") or []


def one_wheel_per_package(wheels: list[Path]) -> dict[str, Path]:
    """``{canonical name: wheel}``; two wheels of one package (pip would stop) are refused."""
    by_name: dict[str, list[Path]] = {}
    for wheel in wheels:
        by_name.setdefault(wheel_name_and_version(wheel)[0], []).append(wheel)
    doubled = {name: files for name, files in by_name.items() if len(files) > 1}
    if doubled:
        name, files = next(iter(doubled.items()))
        raise BundleError(
            f"two wheels of {name}: {', '.join(sorted(f.name for f in files))}; keep one"
        )
    return {name: files[0] for name, files in by_name.items()}


def unmet_requirements(wheels: dict[str, Path], image_packages=IMAGE_PACKAGES) -> list[str]:
    """What the carried wheels require on the image's Python and platform that is neither
    carried nor in the image, or carried at a version the requirement excludes."""
    from packaging.requirements import Requirement

    versions = {name: wheel_name_and_version(wheel)[1] for name, wheel in wheels.items()}
    unmet = []
    for name, wheel in sorted(wheels.items()):
        for line in wheel_requirements(wheel):
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate(MARKER_ENVIRONMENT):
                continue
            needed = canonical_name(requirement.name)
            if needed in versions:
                if not requirement.specifier.contains(versions[needed], prereleases=True):
                    unmet.append(f"{name} needs {line}, carried: {needed} {versions[needed]}")
            elif needed not in image_packages:
                unmet.append(f"{name} needs {line}: neither carried nor in the image")
    return unmet


def download_wheels(pins: dict[str, str], folder: Path) -> None:
    """The pinned wheels for the image's Python and platform (``--no-deps``: every
    dependency is pinned itself), from PyPI through pip."""
    binary = [f"{name}=={version}" for name, version in pins.items() if name not in SOURCE_ONLY]
    source = [f"{name}=={version}" for name, version in pins.items() if name in SOURCE_ONLY]
    platforms = [argument for p in PLATFORMS for argument in ("--platform", p)]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    commands = [
        [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version",
         PYTHON_VERSION, "--implementation", "cp", *platforms, "-d", str(folder), *binary],
    ]  # fmt: skip
    if source:  # pure Python: the wheel built here installs on any Python 3
        commands.append([*pip, "wheel", "--no-deps", "-w", str(folder), *source])
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            last = result.stderr.strip().splitlines()[-1:] or ["(no output)"]
            raise BundleError(f"pip {command[4]} failed: {last[0]}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: Path, root: Path) -> dict:
    return {
        "file": str(path.relative_to(root)),
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
    }


def travelling_tree_bytes(repo: Path = REPO) -> int:
    """Bytes of what travels with every call besides carried folders: tracked files and
    untracked files that git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    paths = (repo / name.decode() for name in listed if name)
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def stage_data(idx_dir: Path, staging: Path) -> list[Path]:
    """Checks the IDX files (one line naming a bad one) and copies them."""
    ingest.read_idx_folder("fashion_mnist", idx_dir)
    (staging / DATA_FOLDER).mkdir()
    copies = []
    for split in ("train", "test"):
        for kind in ("images", "labels"):
            source = idx.split_file(idx_dir, split, kind)
            copies.append(Path(shutil.copy2(source, staging / DATA_FOLDER / source.name)))
    return copies


def stage_wheels(wheel_dir: Path | None, staging: Path) -> dict[str, Path]:
    """The wheels of ``wheel_dir``, or the pinned set downloaded; checked as a set."""
    folder = staging / WHEEL_FOLDER
    folder.mkdir()
    if wheel_dir is None:
        download_wheels(carried_pins(), folder)
    else:
        if not wheel_dir.is_dir():
            raise BundleError(f"--wheel_dir={wheel_dir}: no such folder")
        for wheel in sorted(wheel_dir.glob("*.whl")):
            shutil.copy2(wheel, folder / wheel.name)
    wheels = one_wheel_per_package(sorted(folder.glob("*.whl")))
    unmet = unmet_requirements(wheels)
    if unmet:
        raise BundleError(f"the carried wheels leave {len(unmet)} requirement(s) unmet: "
                          + "; ".join(unmet))  # fmt: skip
    return wheels


def build(
    bundle: Path,
    idx_dir: Path,
    wheel_dir: Path | None = None,
    *,
    limit_bytes: int = TRAVEL_LIMIT_BYTES,
    repo: Path = REPO,
) -> dict:
    """Builds ``bundle`` in a staging folder beside it and puts it in place only when every
    check passed; returns its manifest."""
    staging = bundle.with_name(bundle.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        data = stage_data(idx_dir, staging)
        wheels = stage_wheels(wheel_dir, staging)
        bundle_bytes = folder_bytes(staging)
        tree_bytes = travelling_tree_bytes(repo)
        total = bundle_bytes + tree_bytes
        print(
            f"bundle {bundle_bytes / MIB:.1f} MiB ({len(wheels)} wheels "
            f"{folder_bytes(staging / WHEEL_FOLDER) / MIB:.1f} MiB, data "
            f"{folder_bytes(staging / DATA_FOLDER) / MIB:.1f} MiB) + working tree "
            f"{tree_bytes / MIB:.1f} MiB = {total / MIB:.1f} MiB of {limit_bytes / MIB:.0f} MiB"
        )
        if total > limit_bytes:
            raise BundleError(
                f"{total / MIB:.1f} MiB would travel, over the limit of {limit_bytes / MIB:.0f} "
                f"MiB (bundle {bundle_bytes / MIB:.1f} MiB, working tree {tree_bytes / MIB:.1f} "
                f"MiB); {bundle} is unchanged"
            )
        record = {
            "built": manifest.now(),
            "python_version": PYTHON_VERSION,
            "platforms": list(PLATFORMS),
            "wheels": [
                {**file_record(w, staging), "name": name, "version": wheel_name_and_version(w)[1]}
                for name, w in sorted(wheels.items())
            ],
            "data": {
                "dataset": "fashion_mnist",
                "source": str(idx_dir),
                "files": [file_record(path, staging) for path in data],
            },
            "bundle_bytes": bundle_bytes,
            "working_tree_bytes": tree_bytes,
            "limit_bytes": limit_bytes,
        }
        (staging / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = bundle.with_name(bundle.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if bundle.exists():
        bundle.rename(previous)
    staging.rename(bundle)
    shutil.rmtree(previous, ignore_errors=True)
    return record


def top_level_modules(distribution: importlib.metadata.Distribution) -> list[str]:
    """The top-level modules an installed distribution's RECORD holds: ``name.py``, an
    extension module, or a folder of Python files (a package, or a namespace package such as
    ``google``). Its ``top_level.txt`` is not used: it can name modules the wheel no longer
    ships (dm-tree 0.1.10 lists ``_tree``)."""
    modules = set()
    for path in distribution.files or ():
        first = path.parts[0]
        if len(path.parts) == 1:
            stem = first.split(".", 1)[0]
            if first.endswith(".py") or first.endswith(
                tuple(importlib.machinery.EXTENSION_SUFFIXES)
            ):
                modules.add(stem)
        elif path.suffix == ".py":
            modules.add(first)
    return sorted(m for m in modules if m.isidentifier() and m != "__pycache__")


def verify(bundle: Path) -> list[str]:
    """Checks an installed bundle where it is used: the data as built, each carried
    package found at its carried version with its modules importable, and what the check
    imports. Returns one line per check passed; raises on the first failure."""
    record = json.loads((bundle / MANIFEST).read_text())
    passed = []
    for data_file in record["data"]["files"]:
        if sha256_of(bundle / data_file["file"]) != data_file["sha256"]:
            raise BundleError(f"{bundle / data_file['file']}: sha256 differs from {MANIFEST}")
    passed.append(f"data: {len(record['data']['files'])} files as built")
    for wheel in record["wheels"]:
        try:
            distribution = importlib.metadata.distribution(wheel["name"])
        except importlib.metadata.PackageNotFoundError:
            raise BundleError(
                f"{wheel['name']} {wheel['version']} was carried, but Python does not find it "
                "(is its install folder on PYTHONPATH?)"
            ) from None
        if distribution.version != wheel["version"]:
            raise BundleError(
                f"{wheel['name']}: {wheel['version']} was carried, Python finds "
                f"{distribution.version} ({distribution.locate_file('')}) first on its path"
            )
        modules = top_level_modules(distribution)
        for module in modules:
            _import(module, f"carried {wheel['name']} {wheel['version']}")
        passed.append(f"carried {wheel['name']} {wheel['version']}: imports {', '.join(modules)}")
    for module in CHECK_IMPORTS:
        _import(module, "the accelerator check")
    passed.append(f"imports {', '.join(CHECK_IMPORTS)}")
    return passed


def _import(module: str, needed_by: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as error:  # any failure to import is the one line to report
        raise BundleError(
            f"import {module} ({needed_by}) failed: {type(error).__name__}: {error}"
        ) from None


def main(argv):
    if len(argv) > 1:
        raise BundleError(f"unexpected arguments {argv[1:]}; flags only")
    bundle = Path(_BUNDLE.value)
    if _VERIFY.value:
        if not (bundle / MANIFEST).is_file():
            raise BundleError(f"--bundle={bundle}: no {MANIFEST}; build it first")
        for line in verify(bundle):
            print(f"verified {line}")
        return
    wheel_dir = Path(_WHEEL_DIR.value) if _WHEEL_DIR.value else None
    record = build(bundle, Path(_IDX_DIR.value), wheel_dir)
    print(f"built {bundle}: {len(record['wheels'])} wheels for Python {PYTHON_VERSION}, "
          f"{len(record['data']['files'])} data files")  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
