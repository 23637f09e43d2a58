"""The wheel as pip builds it: the license travels with it (issue 15: no LICENSE in the
repository or the wheel, and setuptools warned that the `license` table is deprecated)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path


def test_the_wheel_carries_the_license_and_an_spdx_expression(repo: Path, tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-w", str(tmp_path), str(repo)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "deprecated" not in (built.stdout + built.stderr).lower()
    (wheel,) = tmp_path.glob("xen_reconciler-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        license_text = archive.read(next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))).decode()
    assert "License-Expression: MIT" in metadata.splitlines()
    assert license_text == (repo / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n")
