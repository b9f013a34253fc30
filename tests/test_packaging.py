"""Packaging: `python -m build` makes a complete sdist and a wheel, and the sdist installs into a
fresh venv of this same interpreter, where importing thrasks keeps the GIL disabled.

The sdist is meson-python's, i.e. `meson dist`: a copy of the git checkout at HEAD. Only files
COMMITTED to git are in it; uncommitted work is left out, so run this test on a clean checkout
(as CI does). Outside a git checkout (e.g. an unpacked sdist) the test is skipped.

`python -m build` runs without build isolation when this environment has the build requirements
(meson-python, meson, ninja: the dev venvs of tools/dev.sh do), else with isolation (from PyPI).
The sdist install into the fresh venv is what a user's `pip install thrasks-X.tar.gz` does:
an isolated build, which fetches meson-python, meson and ninja from PyPI.
"""

from __future__ import annotations

import email.parser
import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from pathlib import Path, PurePosixPath

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
TIMEOUT = 900  # seconds for one build or install

if not (REPO / ".git").exists():
    pytest.skip("needs a git checkout: the sdist is `meson dist` of git HEAD", allow_module_level=True)

# The top level of the sdist: what building and testing thrasks needs, and nothing else.
SDIST_TOP_LEVEL = {
    "PKG-INFO",  # written by meson-python
    "pyproject.toml",
    "meson.build",
    "meson.options",
    "README.md",
    "LICENSE",
    ".gitignore",
    "csrc",
    "thrasks",
    "tests",
    "docs",
    "examples",  # runnable recipes (examples/multicore_server.py), run by tests/test_server_recipe.py
    "mkdocs.yml",
    # The README's two commands (tools/dev.sh bench|test) and the CI entry point that calls them.
    "tools",
    ".ci",
}
C_UNITS = [
    "mpmc_queue", "dispatcher", "wakefd", "loop_hub", "job", "loop_runner", "mailbox", "worker", "pool",
    "future_bridge", "group", "gather", "module", "args", "fault",
]
FORBIDDEN_DIRS = re.compile(r"^(build|dist|\.git|__pycache__|\.venv.*|\.mesonpy-.*|\.hypothesis|\.pytest_cache)$")
FORBIDDEN_FILES = re.compile(r"\.(so|pyd|dll|dylib|o|a|pyc|whl|tar\.gz)$")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # PYTHON_GIL=0 would force the GIL off and hide a module that re-enables it.
    env.pop("PYTHON_GIL", None)
    env.pop("PYTHONPATH", None)
    # This interpreter's scripts (meson, ninja) first, for the build without isolation.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _run(*cmd: str | Path, cwd: Path) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT,
    )
    if proc.returncode != 0:
        pytest.fail(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout[-8000:]}")
    return proc.stdout


def _meson_version() -> str:
    match = re.search(r"version\s*:\s*'([^']+)'", (REPO / "meson.build").read_text())
    assert match, "meson.build's project() declares no version"
    return match.group(1)


def _uncommitted() -> list[str]:
    """Changes in the work tree that the sdist (git HEAD) will not have."""
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--",
                          "csrc", "thrasks", "tests", "docs", "meson.build", "meson.options",
                          "pyproject.toml", "README.md", "LICENSE"],
                         cwd=REPO, text=True, stdout=subprocess.PIPE).stdout
    return out.splitlines()


_built: dict[str, object] = {}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`python -m build`: the sdist, then the wheel built from that sdist (built once, and a
    failure is reported once, not rebuilt for every test)."""
    if "error" in _built:
        pytest.fail(str(_built["error"]), pytrace=False)
    if "dist" not in _built:
        out = tmp_path_factory.mktemp("dist")
        isolation = ["--no-isolation"] if importlib.util.find_spec("mesonpy") else []
        try:
            _run(sys.executable, "-m", "build", *isolation, "--outdir", out, REPO, cwd=out)
        except pytest.fail.Exception as exc:
            dirty = _uncommitted()
            note = ("\nNOTE: the sdist holds only what is committed; not committed:\n  "
                    + "\n  ".join(dirty)) if dirty else ""
            _built["error"] = f"python -m build failed{note}\n{exc}"
        if "error" in _built:
            pytest.fail(str(_built["error"]), pytrace=False)
        sdists = list(out.glob("thrasks-*.tar.gz"))
        wheels = list(out.glob("thrasks-*.whl"))
        assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
        _built["dist"] = {"sdist": sdists[0], "wheel": wheels[0]}
    return _built["dist"]  # type: ignore[return-value]


@pytest.fixture(scope="module")
def sdist_files(dist: dict[str, Path]) -> set[PurePosixPath]:
    with tarfile.open(dist["sdist"]) as tar:
        names = [PurePosixPath(m.name) for m in tar.getmembers() if m.isfile()]
    top = {n.parts[0] for n in names}
    assert top == {f"thrasks-{_meson_version()}"}, top
    return {PurePosixPath(*n.parts[1:]) for n in names}


def _git_files(*dirs: str) -> set[PurePosixPath]:
    out = subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD", "--", *dirs],
                         cwd=REPO, check=True, text=True, stdout=subprocess.PIPE).stdout
    return {PurePosixPath(line) for line in out.splitlines() if line}


def test_sdist_contains_everything_needed_to_build(sdist_files: set[PurePosixPath]) -> None:
    required = {PurePosixPath(p) for p in [
        "pyproject.toml", "meson.build", "meson.options", "README.md", "LICENSE", "PKG-INFO",
        "csrc/module.c", "thrasks/__init__.py", "thrasks/_core.pyi", "thrasks/py.typed",
    ]}
    for unit in C_UNITS:
        required.add(PurePosixPath(f"csrc/{unit}.c"))
        if (REPO / "csrc" / f"{unit}.h").exists():  # mailbox.c and worker.c share loop_runner.h
            required.add(PurePosixPath(f"csrc/{unit}.h"))
    assert sorted(map(str, required - sdist_files)) == []
    # Every committed file of the sources, the tests and the docs is shipped.
    assert sorted(map(str, _git_files("csrc", "thrasks", "tests", "docs") - sdist_files)) == []
    assert any(p.parts[0] == "tests" and p.name.startswith("test_") for p in sdist_files)
    assert any(p.parts[0] == "docs" for p in sdist_files), "the sdist has no docs/"


def test_sdist_contains_nothing_else(sdist_files: set[PurePosixPath]) -> None:
    unexpected_top = {p.parts[0] for p in sdist_files} - SDIST_TOP_LEVEL
    assert sorted(unexpected_top) == []
    junk = [str(p) for p in sdist_files
            if any(FORBIDDEN_DIRS.match(part) for part in p.parts[:-1]) or FORBIDDEN_FILES.search(p.name)]
    assert junk == []


def test_wheel_holds_the_extension_and_the_typing_files(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as whl:
        names = set(whl.namelist())
    # The one extension module, built for this interpreter's ABI (e.g. cpython-313t-x86_64-linux-gnu).
    assert f"thrasks/_core{sysconfig.get_config_var('EXT_SUFFIX')}" in names, sorted(names)
    for name in ["thrasks/__init__.py", "thrasks/_core.pyi", "thrasks/py.typed"]:
        assert name in names
    # The ABI tag: cp313t for the free-threaded build, cp313 for the GIL build; a debug
    # interpreter (--with-pydebug) adds "d" (cp313td).
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}{'t' if FREE_THREADED else ''}"
    debug = "d" if hasattr(sys, "gettotalrefcount") else ""
    assert f"-{tag}{debug}-" in dist["wheel"].name, dist["wheel"].name


def test_wheel_metadata(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as whl:
        [meta_name] = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(whl.read(meta_name).decode())
    assert meta["Name"] == "thrasks"
    assert meta["Version"] == _meson_version()  # one source of truth: meson.build
    assert meta["Requires-Python"] == ">=3.13"
    assert meta["License-Expression"] == "MIT"
    classifiers = meta.get_all("Classifier") or []
    assert any(c.startswith("Programming Language :: Python :: Free Threading ::") for c in classifiers)
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"test", "bench"} <= extras
    assert {"Homepage", "Source", "Issues"} <= {u.split(",")[0] for u in meta.get_all("Project-URL") or []}


SMOKE = textwrap.dedent("""
    import asyncio, importlib.metadata, sys, sysconfig
    import thrasks

    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if free_threaded:
        assert not sys._is_gil_enabled(), "importing thrasks re-enabled the GIL"

    async def square(i):
        await asyncio.sleep(0)
        return i * i

    async def main():
        return await thrasks.threaded_gather(*(square(i) for i in range(8)), num_threads=2)

    assert asyncio.run(main()) == [i * i for i in range(8)]
    if free_threaded:
        assert not sys._is_gil_enabled(), "running thrasks re-enabled the GIL"
    assert thrasks.__version__ == importlib.metadata.version("thrasks"), thrasks.__version__
    print(thrasks.__version__, thrasks.__file__, "gil" if sys._is_gil_enabled() else "nogil")
""")


def test_sdist_installs_into_a_fresh_venv_and_runs(dist: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # A venv made from a venv's interpreter is a venv of the same base interpreter. Without pip:
    # this environment's pip installs into it (`pip --python`), because ensurepip is not always
    # usable (Debian's picks the machine's own pip wheel, which may not run on a newer Python).
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    pip_python = os.environ.get("THRASKS_TEST_PIP_PYTHON")
    if pip_python:
        # The TSan leg (tools/dev.sh): its interpreter has no pip, and pip and meson run about
        # ten times slower under it. The free-threaded interpreter it was built from (same
        # version and ABI) builds the sdist and installs it into the venv's site-packages.
        site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path).split()[-1]
        _run(pip_python, "-m", "pip", "install", "--target", site, dist["sdist"], cwd=tmp_path)
    else:
        _run(sys.executable, "-m", "pip", "--python", python, "install", dist["sdist"], cwd=tmp_path)
    # -P and cwd=tmp_path: the installed package, never the repository's thrasks/.
    out = _run(python, "-P", "-c", SMOKE, cwd=tmp_path)
    version, location, gil = out.split()[-3:]
    assert version == _meson_version()
    assert Path(location).resolve().is_relative_to(venv.resolve())
    assert gil == ("nogil" if FREE_THREADED else "gil")
