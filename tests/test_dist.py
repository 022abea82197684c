"""`make dist` builds an sdist and a wheel (the wheel from the sdist, as `python -m build`
does), and the wheel installed outside the checkout is a working f2git with every extra."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
EXTRAS = "rclone,hub,demo,jupyterhub,test"


def test_the_wheel_from_the_sdist_installs_and_runs_outside_the_checkout(tmp_path):
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("f2git-*-py3-none-any.whl")
    assert list((tmp_path / "dist").glob("f2git-*.tar.gz"))
    from f2git import __version__
    assert wheel.name == f"f2git-{__version__}-py3-none-any.whl"  # the version comes from one place
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("f2git/templates/index.html", "f2git/static/dashboard.js", "pullhook/remote_helper.py",
                   "connectors/canvas.py", "f2git/backup.py", "f2git/demo.py"):
        assert needed in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert "Requires-Dist: GitPython" not in metadata  # declared only what is imported
    for extra in EXTRAS.split(","):
        assert f"Provides-Extra: {extra}" in metadata

    # every extra resolves (the dependencies are the test environment's own)
    report = tmp_path / "report.json"
    resolved = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "-q", "--report", str(report),
                               f"{wheel}[{EXTRAS}]"], capture_output=True, text=True, timeout=300)
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    assert [i["metadata"]["name"] for i in json.loads(report.read_text())["install"]] == ["f2git"]

    # installed elsewhere, away from the checkout: commands and the package data work
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    check = f"""
import f2git, pullhook.remote_helper, connectors.canvas, f2git.demo
from f2git.server.dashboard import TEMPLATES
assert f2git.__file__.startswith({str(target)!r}), f2git.__file__
assert (TEMPLATES / "index.html").is_file()
"""
    ran = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    version = subprocess.run([sys.executable, "-m", "f2git.cli", "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
    assert version.stdout.strip() == f"f2git {__version__}"
