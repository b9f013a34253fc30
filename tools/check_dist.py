"""Check a release directory made by `tools/dev.sh wheels`: one sdist and one repaired wheel per
interpreter, each complete, with nothing else in it.

    python tools/check_dist.py OUTDIR RAW_WHEEL...

RAW_WHEEL... are the wheels as built (before auditwheel): each must have exactly one repaired
counterpart in OUTDIR, with the same Python and ABI tags and a manylinux platform tag. For every
wheel: the package files are exactly those of the sdist's thrasks/ (every .py, .pyi and py.typed,
no tests, no C sources) plus one extension module whose suffix matches the ABI tag; no library was
grafted in (thrasks links only the C library); RECORD lists every file with its true hash and size;
WHEEL and METADATA agree with the file name and the sdist. Exit status 1 with every problem listed.
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import re
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

WHEEL_NAME = re.compile(r"^thrasks-(?P<version>[^-]+)-(?P<py>cp3\d+)-(?P<abi>cp3\d+t?)-(?P<plat>[^-]+)\.whl$")
# PEP 600 tags, and the legacy aliases auditwheel adds beside them (manylinux2014 = manylinux_2_17).
MANYLINUX = re.compile(r"^manylinux(_\d+_\d+|1|2010|2014)_(?P<arch>x86_64|aarch64)$")
REQUIRED_CLASSIFIERS = [
    "Programming Language :: Python :: 3.13",
    "Programming Language :: Python :: 3.14",
    "Programming Language :: Python :: 3.15",
]

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def sdist_package_files(sdist: Path) -> tuple[str, set[str]]:
    """The version, and the files of the thrasks package (thrasks/...) as the wheel must hold them."""
    with tarfile.open(sdist) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
        top = {n.split("/")[0] for n in names}
        if len(top) != 1:
            problem(f"{sdist.name}: more than one top-level directory: {sorted(top)}")
        pkg_info = next((n for n in names if n.count("/") == 1 and n.endswith("/PKG-INFO")), None)
        if pkg_info is None:
            problem(f"{sdist.name}: no PKG-INFO")
            return "", set()
        meta = email.parser.Parser().parsestr(tar.extractfile(pkg_info).read().decode())  # type: ignore[union-attr]
    files = set()
    for n in names:
        rel = PurePosixPath(*PurePosixPath(n).parts[1:])
        if rel.parts[:1] == ("thrasks",) and (rel.suffix in (".py", ".pyi") or rel.name == "py.typed"):
            files.add(str(rel))
    if not files:
        problem(f"{sdist.name}: no thrasks/ package files")
    return meta["Version"], files


def check_record(whl: zipfile.ZipFile, name: str, record_name: str) -> None:
    listed = {}
    for line in whl.read(record_name).decode().splitlines():
        if not line.strip():
            continue
        path, digest, size = line.rsplit(",", 2)
        listed[path] = (digest, size)
    for info in whl.infolist():
        if info.is_dir():
            continue
        if info.filename not in listed:
            problem(f"{name}: {info.filename} is not in RECORD")
            continue
        if info.filename == record_name:
            continue
        data = whl.read(info.filename)
        want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if listed[info.filename] != (want, str(len(data))):
            problem(f"{name}: RECORD has a wrong hash or size for {info.filename}")
    missing = set(listed) - {i.filename for i in whl.infolist()}
    if missing:
        problem(f"{name}: RECORD lists files the wheel does not have: {sorted(missing)}")


def check_wheel(path: Path, version: str, package_files: set[str]) -> None:
    name = path.name
    m = WHEEL_NAME.match(name)
    if not m:
        problem(f"{name}: not a thrasks CPython wheel name")
        return
    if m["version"] != version:
        problem(f"{name}: version {m['version']}, the sdist's is {version}")
    plats = [MANYLINUX.match(p) for p in m["plat"].split(".")]
    if not all(plats) or not any(p.group(1).startswith("_") for p in plats if p):
        problem(f"{name}: platform tag {m['plat']} is not a manylinux_X_Y tag (with its legacy aliases)")
        return
    abi = m["abi"]  # cp313t -> extension suffix .cpython-313t-<arch>-linux-gnu.so
    arch = plats[0]["arch"]  # type: ignore[index]
    ext = f"thrasks/_core.cpython-{abi[2:]}-{arch}-linux-gnu.so"
    dist_info = f"thrasks-{version}.dist-info"
    with zipfile.ZipFile(path) as whl:
        files = {i.filename for i in whl.infolist() if not i.is_dir()}
        package = {f for f in files if not f.startswith(dist_info + "/")}
        expected = package_files | {ext}
        if package != expected:
            if package - expected:
                problem(f"{name}: unexpected files {sorted(package - expected)} (a grafted library? tests?)")
            if expected - package:
                problem(f"{name}: missing files {sorted(expected - package)}")
        meta_files = {f[len(dist_info) + 1 :] for f in files if f.startswith(dist_info + "/")}
        absent = [f for f in ("METADATA", "WHEEL", "RECORD", "licenses/LICENSE") if f not in meta_files]
        if absent:
            problem(f"{name}: no {', '.join(absent)} in {dist_info}")
            return
        check_record(whl, name, f"{dist_info}/RECORD")
        wheel_meta = email.parser.Parser().parsestr(whl.read(f"{dist_info}/WHEEL").decode())
        tags = set(wheel_meta.get_all("Tag") or [])
        want_tags = {f"{m['py']}-{abi}-{p}" for p in m["plat"].split(".")}
        if tags != want_tags:
            problem(f"{name}: WHEEL says tags {sorted(tags)}, the file name {sorted(want_tags)}")
        if wheel_meta["Root-Is-Purelib"] != "false":
            problem(f"{name}: Root-Is-Purelib is not false (the wheel holds an extension module)")
        meta = email.parser.Parser().parsestr(whl.read(f"{dist_info}/METADATA").decode())
        if (meta["Name"], meta["Version"]) != ("thrasks", version):
            problem(f"{name}: METADATA names {meta['Name']} {meta['Version']}")
        if meta["Requires-Python"] != ">=3.13":
            problem(f"{name}: Requires-Python is {meta['Requires-Python']}")
        classifiers = meta.get_all("Classifier") or []
        for c in REQUIRED_CLASSIFIERS:
            if c not in classifiers:
                problem(f"{name}: no classifier '{c}'")
        if not any(c.startswith("Programming Language :: Python :: Free Threading ::") for c in classifiers):
            problem(f"{name}: no free-threading classifier")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    raw = [Path(a) for a in argv[1:]]
    sdists = sorted(out.glob("thrasks-*.tar.gz"))
    wheels = sorted(out.glob("thrasks-*.whl"))
    others = sorted(p.name for p in out.iterdir() if p not in sdists and p not in wheels)
    if len(sdists) != 1:
        print(f"expected one sdist in {out}, found {[p.name for p in sdists]}", file=sys.stderr)
        return 1
    if others:
        problem(f"{out}: files that are neither the sdist nor a wheel: {others}")
    version, package_files = sdist_package_files(sdists[0])
    for r in raw:
        m = WHEEL_NAME.match(r.name)
        if not m:
            problem(f"{r.name}: not a thrasks CPython wheel name")
            continue
        prefix = f"thrasks-{m['version']}-{m['py']}-{m['abi']}-"
        repaired = [w for w in wheels if w.name.startswith(prefix)]
        if len(repaired) != 1:
            problem(f"{r.name}: expected one repaired wheel {prefix}*.whl, found {[w.name for w in repaired]}")
    if len(wheels) != len(raw):
        problem(f"{len(wheels)} wheels in {out} for {len(raw)} interpreters: {[w.name for w in wheels]}")
    for w in wheels:
        check_wheel(w, version, package_files)
    if problems:
        print("dist check FAILED:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"dist check: {sdists[0].name} and {len(wheels)} wheels, each with {len(package_files)} package files "
          f"+ its extension module:")
    for w in wheels:
        print(f"  {w.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
