"""Installing paddiff next to a Paddle build the user chose, in a throwaway environment.

paddiff's real wheel is built from this checkout; every dependency it names is replaced by an empty
stand-in wheel of a matching version, and Paddle by two fakes that both provide `paddle`:
`paddlepaddle-gpu` (installed first, as a GPU user has it) and `paddlepaddle` (the CPU wheel,
offered in the same local index). pip resolves with `--no-index` against that folder only.

What this proves: with paddiff's own metadata, pip keeps an installed `paddlepaddle-gpu` and adds
no CPU wheel beside it; `paddiff[cpu]` is what brings the CPU wheel; with no Paddle at all,
`import paddiff` says what to install; the wheel carries the hub module and the web page. What it
does not prove: that a real GPU build runs paddiff (no GPU here), or how pip resolves against the
real index (the stand-ins declare no dependencies of their own).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("core", "plugins", "hub_module", "setup.cfg", "pyproject.toml", "README.md")


def make_wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A minimal pure-Python wheel: `files` (path -> text) plus the dist-info pip needs."""
    stem = f"{name.replace('-', '_')}-{version}"
    info = f"{stem}.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    contents[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: paddiff-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    records = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        records.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    records.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = "\n".join(records) + "\n"
    path = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name_in_zip, text in contents.items():
            wheel.writestr(name_in_zip, text)
    return path


def version_for(requirement: Requirement) -> str:
    pinned = [spec.version for spec in requirement.specifier if spec.operator == "=="]
    lower = [spec.version for spec in requirement.specifier if spec.operator in (">=", "~=")]
    for candidate in [*pinned, *lower, "0.1", "1.0", "99.0"]:
        if requirement.specifier.contains(candidate, prereleases=True):
            return candidate
    raise AssertionError(f"no stand-in version for {requirement}")


def fake_paddle(build: str) -> dict[str, str]:
    return {"paddle/__init__.py": f"BUILD = {build!r}\n__version__ = '3.3.1'\n"}


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """paddiff's wheel built from this checkout, stand-ins for its dependencies, both fakes."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(origin, source / name)
    house = tmp_path_factory.mktemp("wheelhouse")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(house), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = house.glob("paddiff-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(info).decode())
    # The wheel carries the hub module folder and the page (`paddiff hub install`, webui).
    assert "paddiff/hub_module/paddiff/module.py" in names
    assert "paddiff/hub_module/paddiff/__init__.py" in names
    assert "paddiff/web/index.html" in names
    for line in metadata.get_all("Requires-Dist"):
        requirement = Requirement(line)
        # extras (cpu: paddlepaddle, dev) and Paddle itself are the fakes below: were paddlepaddle
        # an install requirement, pip would take the fake CPU wheel, which the test catches
        if requirement.marker is not None or requirement.name.startswith("paddlepaddle"):
            continue
        make_wheel(house, requirement.name, version_for(requirement), {})
    make_wheel(house, "paddlepaddle", "3.3.1", fake_paddle("cpu"))
    make_wheel(house, "paddlepaddle-gpu", "3.3.1", fake_paddle("gpu"))
    return house


def pip(environment: Path, house: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(environment / "bin" / "python")]
        + ["--disable-pip-version-check", *args]
        + (["-q", "--no-index", "--find-links", str(house)] if args[0] == "install" else []),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def installed(environment: Path, house: Path) -> set[str]:
    listing = pip(environment, house, "list", "--format=freeze").stdout
    return {line.split("==")[0].lower() for line in listing.split()}


def python(environment: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(environment / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_paddiff_keeps_a_gpu_build_and_says_what_to_install_without_paddle(wheelhouse, tmp_path):
    environment = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)

    # A GPU user's environment: paddlepaddle-gpu is there first; then `pip install paddiff`.
    pip(environment, wheelhouse, "install", "paddlepaddle-gpu")
    pip(environment, wheelhouse, "install", "paddiff")
    names = installed(environment, wheelhouse)
    assert "paddiff" in names and "paddlepaddle-gpu" in names
    assert "paddlepaddle" not in names  # no CPU wheel beside (or over) the GPU build
    done = python(environment, "import paddle, paddiff; print(paddle.BUILD)", tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "gpu", done.stderr

    # The module folder ships in the wheel: `paddiff hub path` names it in site-packages.
    done = subprocess.run(
        [str(environment / "bin" / "paddiff"), "hub", "path"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert "site-packages" in folder.parts and (folder / "module.py").is_file()

    # No Paddle build at all: one message saying what to install for CPU and for GPU.
    pip(environment, wheelhouse, "uninstall", "-y", "paddlepaddle-gpu")
    done = python(environment, "import paddiff", tmp_path)
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: paddiff needs PaddlePaddle")
    assert 'pip install "paddiff[cpu]"' in message and "paddlepaddle-gpu" in message

    # The extra brings the CPU wheel.
    pip(environment, wheelhouse, "install", "paddiff[cpu]")
    assert "paddlepaddle" in installed(environment, wheelhouse)
    done = python(environment, "import paddle, paddiff; print(paddle.BUILD)", tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "cpu", done.stderr
