"""Typing: ``mypy --strict`` is clean on the thrasks package and on the README's examples.

Both checks read the SOURCE tree (``thrasks/*.py`` and the stub of the C module,
``thrasks/_core.pyi``), not the installed copy: they need no compiled extension. They run
``python -m mypy`` from this interpreter, and are skipped when mypy is not installed here
(``tools/dev.sh test`` installs it for its mypy step).

The README's examples: every ```` ```python ```` block of README.md must be a complete program
(the blocks are also what users copy and run). They are checked with ``--strict`` minus
``disallow_untyped_defs`` / ``disallow_incomplete_defs`` / ``disallow_untyped_calls``, for the
examples only: the seed's Quick Start, kept verbatim, declares ``async def main():`` without a
return type, which strict mode rejects, and then calls it (``asyncio.run(main())``), which strict
mode rejects too. ``check_untyped_defs`` stays on (it is part of ``--strict``), so the bodies of
those functions are still type-checked. Errors inside thrasks itself are left to
``test_package_is_mypy_strict_clean``, so that each failure is reported once, where it is.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TIMEOUT = 600  # seconds for one mypy run (a cold run over the package takes ~10 s)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed in this environment (pip install mypy; tools/dev.sh test runs it)",
)


def readme_python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def run_mypy(*args: str | Path, cwd: Path, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # The README examples import thrasks: take it from the source tree (thrasks/_core.pyi).
    env["MYPYPATH"] = str(REPO)
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache_dir), "--no-color-output", *map(str, args)],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=TIMEOUT,
    )


def test_package_is_mypy_strict_clean(tmp_path: Path) -> None:
    # From the repository root, so that pyproject.toml's [tool.mypy] applies: the same command
    # as tools/dev.sh's mypy step.
    proc = run_mypy("--strict", "-p", "thrasks", cwd=REPO, cache_dir=tmp_path / "cache")
    assert proc.returncode == 0, f"mypy --strict -p thrasks:\n{proc.stdout}"


def test_readme_has_python_examples() -> None:
    assert len(readme_python_blocks()) >= 2, "README.md lost its Quick Start examples"


def test_readme_examples_are_mypy_strict_clean(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    examples.mkdir()
    names = []
    for i, block in enumerate(readme_python_blocks()):
        path = examples / f"readme_example_{i:02d}.py"
        path.write_text(block, encoding="utf-8")
        names.append(path.name)
    # Run from the temporary directory, with a config of its own (nothing else applies).
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\npython_version = 3.13\n\n[mypy-thrasks.*]\nignore_errors = True\n", encoding="utf-8"
    )
    proc = run_mypy(
        "--config-file", config,
        "--strict",
        # Only for the examples (see the module docstring): the seed's `async def main():`.
        "--allow-untyped-defs",
        "--allow-incomplete-defs",
        "--allow-untyped-calls",
        *names,
        cwd=examples,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    listing = "\n".join(
        f"--- readme_example_{i:02d}.py ---\n{block}" for i, block in enumerate(readme_python_blocks())
    )
    assert proc.returncode == 0, f"mypy on the README's python blocks:\n{proc.stdout}\n{listing}"


# threaded_map: the element type follows from func (tests/test_map.py tests the behaviour).
THREADED_MAP_USE = '''
import asyncio
from collections.abc import AsyncIterator
from typing import assert_type

from thrasks import ThreadedMap, threaded_map


async def parse(line: str) -> int:
    return len(line)


async def lines() -> AsyncIterator[str]:
    yield "a"


async def main() -> None:
    it = threaded_map(parse, ["a", "bb"], num_threads=2)
    assert_type(it, ThreadedMap[int])
    async for n in it:
        assert_type(n, int)
    async for m in threaded_map(parse, lines(), return_exceptions=True):
        assert_type(m, int | BaseException)
    async with threaded_map(parse, ["x"], ordered=False, max_in_flight=3) as results:
        async for k in results:
            assert_type(k, int)


asyncio.run(main())
'''

THREADED_MAP_MISUSE = '''
from thrasks import threaded_map


async def parse(line: str) -> int:
    return len(line)


threaded_map(parse, [1, 2])
'''


def test_threaded_map_results_are_typed_from_func(tmp_path: Path) -> None:
    (tmp_path / "use.py").write_text(THREADED_MAP_USE, encoding="utf-8")
    (tmp_path / "misuse.py").write_text(THREADED_MAP_MISUSE, encoding="utf-8")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\npython_version = 3.13\n", encoding="utf-8")
    ok = run_mypy("--config-file", config, "--strict", "use.py", cwd=tmp_path, cache_dir=tmp_path / "cache")
    assert ok.returncode == 0, ok.stdout
    wrong = run_mypy("--config-file", config, "--strict", "misuse.py", cwd=tmp_path, cache_dir=tmp_path / "cache")
    # the str -> int function does not fit int items (mypy names the argument, or the overloads)
    assert wrong.returncode == 1 and '"threaded_map"' in wrong.stdout, wrong.stdout
    assert "misuse.py:9: error" in wrong.stdout, wrong.stdout
