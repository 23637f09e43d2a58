"""Persistence of the simulated xenstored and `reconciler sim serve` as a real process."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.xenstore import Store
from drivers.xenstore.persist import STATE_FILE, load, load_or_new, save
from reconciler.errors import StateFileError
from reconciler.ports import Perm


def sample() -> Store:
    store = Store()
    store.write("/local/domain/3/name", "web1")
    store.write("/local/domain/3/binary", bytes(range(256)))
    store.write("/local/domain/1/name", "ndvm")  # sibling order is creation order
    store.set_perms("/local/domain/3", [Perm(0, "n"), Perm(3, "r")])
    store.set_perms("@releaseDomain", [Perm(0, "n"), Perm(3, "r")])
    store.introduce_domain(3)
    return store


def test_round_trip_keeps_values_perms_order_and_domains(tmp_path: Path) -> None:
    save(sample(), tmp_path / STATE_FILE)
    loaded = load(tmp_path / STATE_FILE)
    assert [(p, n.value, n.perms) for p, n in loaded.items()] == [(p, n.value, n.perms) for p, n in sample().items()]
    assert loaded.directory("/local/domain") == ["3", "1"]
    assert loaded.get_perms("@releaseDomain") == [Perm(0, "n"), Perm(3, "r")]
    assert loaded.is_introduced(3)
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # no temp file left behind


def test_missing_file_is_an_empty_store_but_a_bad_one_is_refused(tmp_path: Path) -> None:
    assert len(load_or_new(tmp_path / STATE_FILE)) == 1
    (tmp_path / STATE_FILE).write_text("")
    with pytest.raises(StateFileError):
        load_or_new(tmp_path / STATE_FILE)


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign", "version"])
def test_damaged_state_is_refused_not_emptied(tmp_path: Path, damage: str) -> None:
    file = tmp_path / STATE_FILE
    save(sample(), file)
    data = file.read_bytes()
    if damage == "truncate":
        data = data[: len(data) - 10]
    elif damage == "flip":
        cut = data.index(b"web1")
        data = data[:cut] + b"WEB1" + data[cut + 4 :]
    elif damage == "foreign":
        data = b'{"nodes": []}\n{}'
    else:
        head, body = data.split(b"\n", 1)
        data = json.dumps({**json.loads(head), "version": 99}).encode() + b"\n" + body
    file.write_bytes(data)
    with pytest.raises(StateFileError, match="move it away"):
        load(file)
    assert file.read_bytes() == data


def _write_hashed(file: Path, nodes: list[list[object]]) -> None:
    """A well-formed, correctly hashed state file around `nodes`: only the content is wrong."""
    body = json.dumps({"nodes": nodes, "special": {}, "introduced": []}).encode()
    header = {"format": "xen-reconciler/xenstore-state", "version": 1, "length": len(body),
              "sha256": hashlib.sha256(body).hexdigest()}
    file.write_bytes(json.dumps(header).encode() + b"\n" + body)


@pytest.mark.parametrize(("nodes", "words"), [
    ([["/", "", "n0"], ["/a/b", "", "n0"]], "orphaned node '/a/b'"),
    ([["/", "", "n0"], ["/a", "", "n0"], ["/a", "x", "n0"]], "duplicate"),
    ([["/", "", "n0"], ["a", "", "n0"]], "bad node path 'a'"),
    ([["/", "", "n0"], ["/a b", "", "n0"]], "bad node path '/a b'"),
    ([["/", "", "n0"], ["/caf\u00e9", "", "n0"]], "bad node path '/caf\u00e9'"),
    ([["/", "", "n0"], ["/a/", "", "n0"]], "ends with /"),
    ([["/", "", "n0"], ["/a//b", "", "n0"]], "contains //"),
    ([["/", "", "n0"], ["/" + "a" * 3100, "", "n0"]], "longer than"),
    ([["/a", "", "n0"]], "first saved node"),
    ([["/", 7, "n0"]], "move it away"),
    ([["/", "", "x9"]], "move it away"),
])
def test_hashed_state_with_bad_content_is_refused(tmp_path: Path, nodes: list[list[object]], words: str) -> None:
    """The checksum only proves the file is what was written; what it says is checked too."""
    file = tmp_path / STATE_FILE
    _write_hashed(file, nodes)
    with pytest.raises(StateFileError, match="move it away") as caught:
        load(file)
    assert words in str(caught.value)


def test_hashed_state_with_good_content_loads(tmp_path: Path) -> None:
    file = tmp_path / STATE_FILE
    _write_hashed(file, [["/", "", "n0"], ["/a", "1", "n0"], ["/a/b", "2", "r1"], ["/@c", "", "n0"]])
    store = load(file)
    assert store.read("/a/b") == b"2" and store.directory("/") == ["a", "@c"]


def _serve(state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "sim", "serve", "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _tool(sock: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "XENSTORED_PATH": sock}
    return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=10, check=False)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sim_serve_persists_across_runs(sock_dir: Path, sig: signal.Signals) -> None:
    state = sock_dir / "state"
    proc = _serve(state)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    sock = line.rsplit(" ", 1)[1].strip()
    assert line.startswith("xenstored: listening on ") and sock == str(state / "xenstored.sock")
    assert _tool(sock, "/usr/bin/xenstore-write", "/kept", "across-runs").returncode == 0
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "saved" in err and not os.path.exists(sock)
    proc = _serve(state)
    assert proc.stdout is not None
    proc.stdout.readline()
    assert _tool(sock, "/usr/bin/xenstore-read", "/kept").stdout == "across-runs\n"
    proc.terminate()
    proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_sim_serve_refuses_a_corrupt_state(sock_dir: Path) -> None:
    state = sock_dir / "state"
    state.mkdir()
    (state / STATE_FILE).write_text('{"format": "xen-reconciler/xenstore-state"')
    proc = _serve(state)
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert err.count("\n") == 1 and "refusing a bad xenstore state file" in err and "Traceback" not in err
