"""What a user installs: the wheel built from this tree, type-checked from outside it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = """
import asyncio

import pytest_rigging as rg


async def main() -> None:
    chat = await rg.get_generator("echo!m").chat("hi").run()
    reveal_type(chat.last.content)


asyncio.run(main())
"""
"""A user's script, as the README and docs call the library."""


def run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`command` in `cwd`, with no PYTHONPATH or MYPYPATH that could put this tree in view;
    what it printed, stdout and stderr together. It must succeed."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout}"
    return done


def test_the_installed_wheel_is_typed_for_its_users(tmp_path: Path) -> None:
    """The wheel ships `py.typed`, so mypy reads the types of the installed package (not
    `import-untyped`): a chat's last message's content is a `str`. The wheel is built
    from a copy of the tree and installed alone in a new virtual environment; the
    dependencies come from this one's site-packages through a `.pth` file (which adds the
    directory only: the editable install's own `.pth` there is not read), and mypy runs
    outside the tree, so it can only see the installed copy."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "pytest_rigging",
        source / "pytest_rigging",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, source],
        tmp_path,
    )
    [wheel] = dist.glob("pytest_rigging-*.whl")
    shipped = zipfile.ZipFile(wheel).namelist()
    assert "pytest_rigging/py.typed" in shipped
    # the HTML report's template, CSS and script: `--rig-html` reads them from the package
    for name in ("page.html", "page.css", "page.js"):
        assert f"pytest_rigging/plugin/templates/{name}" in shipped

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    paths = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(run([python, "-c", paths], tmp_path).stdout.strip())
    run([*pip, "install", "--no-deps", "--no-index", "--target", site_packages, wheel], tmp_path)
    assert (site_packages / "pytest_rigging" / "py.typed").is_file()
    ours = sysconfig.get_paths()
    (site_packages / "_dependencies.pth").write_text(
        "\n".join(dict.fromkeys([ours["purelib"], ours["platlib"]])) + "\n"
    )
    imported = run(
        [python, "-c", "import pytest_rigging; print(pytest_rigging.__file__)"], tmp_path
    )
    assert Path(imported.stdout.strip()).is_relative_to(site_packages), imported.stdout

    user = tmp_path / "user"
    user.mkdir()
    (user / "use_it.py").write_text(USER_CODE)
    (user / "mypy.ini").write_text("[mypy]\n")  # none of this tree's settings, nor the user's
    mypy = [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", ".cache"]
    done = subprocess.run(
        [*mypy, "--python-executable", str(python), "--show-error-codes", "use_it.py"],
        cwd=user,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = done.stdout + done.stderr
    errors = [line for line in report.splitlines() if ": error:" in line]
    assert errors == [], "mypy on a user's script, against the installed wheel:\n" + report
    assert done.returncode == 0, report
    revealed = re.findall(r'use_it\.py:\d+: note: Revealed type is "([^"]+)"', report)
    assert revealed in (["builtins.str"], ["str"]), textwrap.indent(report, "  ")
