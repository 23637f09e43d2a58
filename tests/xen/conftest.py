"""Fixtures for proving xl.cfg files against Xen's own code (Debian xen-utils-4.17).

Real: libxlutil (xl's cfg and device-spec parser, through ctypes: `xlutil.py`), the real
`xl` binary with libxenlight running `xl create -n` (dry run: parse the cfg, build
libxl's domain configuration, print it as JSON), libxenstore connecting to the
project's simulated host (`reconciler sim serve`: its xenstored on a Unix socket,
XENSTORED_PATH), the C compiler.
Faked: the hypervisor. `xcshim.c`, compiled here with `cc -shared -fPIC` and loaded
with LD_PRELOAD, answers the libxenctrl calls xl makes before and while it parses
(xc_interface_open/close, xc_version, xc_physinfo, xc_sharing_*); its header comment
lists them and why. A missing tool or library fails the test: these tests are the
proof, and CI must never pass by skipping them (scripts/test installs the packages).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
XL = "/usr/lib/xen-4.17/bin/xl"  # /usr/sbin/xl is a wrapper that needs a running hypervisor
SHIM_SOURCE = HERE / "xcshim.c"

DryRun = Callable[[str], dict[str, Any]]


def need(path: str, package: str) -> str:
    """A tool the proof needs; missing, it fails the test (never a skip)."""
    if not (os.path.exists(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{path} is missing: install Debian's {package} (scripts/test installs it)")
    return path


@pytest.fixture(scope="session")
def xcshim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The libxenctrl shim, compiled once per session with the system's cc."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.fail("cc is missing: install Debian's gcc and libc6-dev (scripts/test installs them)")
    out = tmp_path_factory.mktemp("xcshim") / "xcshim.so"
    built = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(SHIM_SOURCE)],
                           capture_output=True, text=True, check=False)
    if built.returncode != 0:
        pytest.fail(f"cc could not build {SHIM_SOURCE.name}:\n{built.stderr}")
    return out


@pytest.fixture(scope="session")
def xenstored() -> Iterator[Path]:
    """The socket of the project's simulated host, served by `reconciler sim serve` in its
    own process (a short temp dir: AF_UNIX paths are limited to 107 bytes), for the
    xs_open(0) of libxl_ctx_alloc. Stopped with SIGTERM at the end of the session."""
    state = Path(tempfile.mkdtemp(prefix="xsxl", dir="/tmp"))
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "sim", "serve", "--state", str(state)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]  # the last once both sockets listen
        sock = state / "xenstored.sock"
        assert lines[-1] == f"export XENSTORED_PATH={sock}\n", (lines, proc.stderr and proc.stderr.read())
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def xl_dry_run(xcshim: Path, xenstored: Path, tmp_path_factory: pytest.TempPathFactory) -> DryRun:
    """`dry_run(cfg_text)`: libxl's domain configuration for the cfg, as `xl create -n`
    prints it (JSON); fails the test with xl's stderr if xl refuses the cfg."""
    xl = need(XL, "xen-utils-4.17")
    cfg_dir = tmp_path_factory.mktemp("cfg")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LD_PRELOAD": str(xcshim), "XENSTORED_PATH": str(xenstored)}

    def dry_run(text: str) -> dict[str, Any]:
        cfg = cfg_dir / "domain.cfg"
        cfg.write_text(text)
        done = subprocess.run([xl, "create", "-n", str(cfg)], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        if done.returncode != 0:
            pytest.fail(f"xl create -n refused the cfg (exit {done.returncode}):\n{done.stderr}\n--- cfg:\n{text}")
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    return dry_run
