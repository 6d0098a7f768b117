"""The Containerfile: what it promises the manifests, and the wheel its build stage makes.

No container engine is needed (CI has none running): the instructions are
read and checked against deploy/kubernetes (the image name, the non-root
uid/gid the pods run as, the exposed ports, the entry point the pods' args
assume), and the build stage's work is redone here - ``pip wheel`` of this
checkout - and the wheel is installed into a *clean* virtual environment,
where ``autonat --help`` and ``autonat boot``'s packaged profile must work.
The wheel is built from a copy of exactly what the build stage COPYs, so a
file missing from those instructions fails here, and without build isolation
(setuptools, the build backend, is a dev dependency: no network needed).
That venv has no project code but the wheel's; it borrows the dependencies
from the test's own environment through a ``.pth`` line (the network is not
needed), which adds their directory to ``sys.path`` without running that
directory's own ``.pth`` files - so the editable install of the checkout is
not visible there.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is missing (kubernetes-validate needs it)")

ROOT = Path(__file__).resolve().parents[1]
CONTAINERFILE = ROOT / "Containerfile"
K8S = ROOT / "deploy" / "kubernetes"


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _values(name: str) -> list[str]:
    return [rest for word, rest in _instructions() if word == name]


def _statefulset() -> dict[str, object]:
    with (K8S / "boot-statefulset.yaml").open(encoding="utf-8") as handle:
        doc: dict[str, object] = yaml.safe_load(handle)
    return doc


def _version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def test_two_stages_on_python_311_slim_the_last_without_build_tools() -> None:
    args = dict(re.findall(r"(\w+)=(\S+)", " ".join(_values("ARG"))))
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    froms = _values("FROM")
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    steps = _instructions()
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM"):]
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert "--no-index" in runs and "pip uninstall --yes pip" in runs
    assert not re.search(r"apt-get|gcc|build-essential|\[dev\]", runs)


def test_the_image_runs_autonat_as_the_pods_non_root_user() -> None:
    assert _values("ENTRYPOINT") == ['["autonat"]']
    assert json.loads(_values("CMD")[0]) == ["boot"]
    [user] = _values("USER")
    uid, gid = (int(x) for x in user.split(":"))
    assert uid != 0
    pod = _statefulset()["spec"]["template"]["spec"]  # type: ignore[index]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        uid, gid)
    boot = next(c for c in pod["containers"] if c["name"] == "autonat")
    assert boot["args"] == ["boot"]  # ENTRYPOINT autonat + args: autonat boot


def test_exposed_ports_are_the_manifests_container_ports() -> None:
    exposed = {tuple(p.split("/")) for v in _values("EXPOSE") for p in v.split()}
    pod = _statefulset()["spec"]["template"]["spec"]  # type: ignore[index]
    boot = next(c for c in pod["containers"] if c["name"] == "autonat")
    ports = {(str(p["containerPort"]), p["protocol"].lower()) for p in boot["ports"]}
    assert ports <= exposed
    assert ("44000", "tcp") in exposed and ("7888", "tcp") in exposed


def test_the_manifests_use_the_image_the_containerfile_documents() -> None:
    header = CONTAINERFILE.read_text(encoding="utf-8").splitlines()[0]
    image = f"ghcr.io/trio-autonat/autonat:{_version()}"
    assert image in header
    pod = _statefulset()["spec"]["template"]["spec"]  # type: ignore[index]
    for container in pod["initContainers"] + pod["containers"]:
        assert container["image"] == image, container["name"]


def test_the_copied_sources_are_everything_the_wheel_needs() -> None:
    copied = {shlex.split(rest)[0] for rest in _values("COPY") if "--from" not in rest}
    copied |= {name for rest in _values("COPY") for name in shlex.split(rest)[:-1]}
    for needed in ("pyproject.toml", "README.md", "LICENSE", "actors", "protocols", "config"):
        assert needed in copied, needed


def _build_context(into: Path) -> Path:
    """What the build stage's COPY instructions copy (and nothing else), in ``into``."""
    into.mkdir()
    for rest in _values("COPY"):
        if "--from" in rest:
            continue
        *sources, _ = shlex.split(rest)
        for name in sources:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, into / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(ROOT / name, into / name)
    return into


def test_the_wheel_installs_into_a_clean_venv_and_runs(tmp_path: Path) -> None:
    """The build stage's wheel (from the COPYed files only), installed without the checkout."""
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "--no-build-isolation", "--wheel-dir", str(wheels),
                            str(_build_context(tmp_path / "src"))],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = wheels.glob("trio_autonat-*.whl")
    venv = tmp_path / "clean"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "_borrowed_deps.pth").write_text("\n".join(deps) + "\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    where = subprocess.run([str(python), "-c", "import actors, importlib.resources as r; "
                            "print(actors.__file__); "
                            "print(r.files('actors._profiles').joinpath('boot.toml').is_file())"],
                           check=True, capture_output=True, text=True, env=env, cwd=tmp_path)
    module, has_profile = where.stdout.split()
    assert Path(module).is_relative_to(venv), f"actors came from {module}, not the wheel"
    assert has_profile == "True"
    helped = subprocess.run([str(venv / "bin" / "autonat"), "--help"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert "boot" in helped.stdout
    boot_help = subprocess.run([str(venv / "bin" / "autonat"), "boot", "--help"],
                               capture_output=True, text=True, env=env, cwd=tmp_path,
                               timeout=120)
    assert boot_help.returncode == 0, boot_help.stderr
    assert "--announce" in boot_help.stdout
