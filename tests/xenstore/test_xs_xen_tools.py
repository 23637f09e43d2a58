"""Xen's own clients (Debian xenstore-utils, test-xenstore) against the simulated xenstored."""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING


from reconciler.ports import Perm

if TYPE_CHECKING:
    from tests.xenstore.conftest import ServerThread

GUEST = 5  # conftest's guest socket acts as this domain


def test_write_read_ls_list_rm(xsd: ServerThread) -> None:
    assert xsd.tool("xenstore-write", "/vm/a/name", "web1", "/vm/a/memory", "1024").returncode == 0
    assert xsd.tool("xenstore-read", "/vm/a/name").stdout == "web1\n"
    ls = xsd.tool("xenstore-ls", "-f", "/vm")
    assert ls.returncode == 0
    assert ls.stdout.splitlines() == ['/vm/a = ""', '/vm/a/name = "web1"', '/vm/a/memory = "1024"']
    assert xsd.tool("xenstore-list", "/vm/a").stdout.split() == ["name", "memory"]
    assert xsd.tool("xenstore-rm", "/vm/a/memory").returncode == 0
    assert xsd.tool("xenstore-list", "/vm/a").stdout.split() == ["name"]
    assert xsd.call(xsd.store.exists, "/vm/a/memory") is False


def test_read_of_missing_node_fails_and_exists_reports_it(xsd: ServerThread) -> None:
    xsd.call(xsd.store.write, "/here", "1")
    missing = xsd.tool("xenstore-read", "/nowhere")
    assert missing.returncode == 1 and "couldn't read path /nowhere" in missing.stderr
    assert xsd.tool("xenstore-exists", "/here").returncode == 0
    assert xsd.tool("xenstore-exists", "/nowhere").returncode == 1


def test_relative_paths_resolve_under_dom0(xsd: ServerThread) -> None:
    assert xsd.tool("xenstore-write", "rel/key", "x").returncode == 0
    assert xsd.call(xsd.store.read, "/local/domain/0/rel/key") == b"x"


def test_chmod_and_ls_perms(xsd: ServerThread) -> None:
    xsd.tool("xenstore-write", "/dev/a", "1", "/dev/a/b", "2")
    assert xsd.tool("xenstore-chmod", "-r", "/dev/a", "n0", f"r{GUEST}").returncode == 0
    assert xsd.call(xsd.store.get_perms, "/dev/a/b") == [Perm(0, "n"), Perm(GUEST, "r")]
    ls = xsd.tool("xenstore-ls", "-fp", "/dev")
    assert ls.stdout.splitlines() == [f'/dev/a = "1"   (n0,r{GUEST})', f'/dev/a/b = "2"   (n0,r{GUEST})']


def test_guest_domain_is_held_to_permissions(xsd: ServerThread) -> None:
    xsd.call(xsd.store.write, "/shared/ro", "v")
    xsd.call(xsd.store.set_perms, "/shared/ro", [Perm(0, "n"), Perm(GUEST, "r")])
    xsd.call(xsd.store.write, "/private", "secret")
    assert xsd.tool("xenstore-read", "/shared/ro", guest=True).stdout == "v\n"
    assert xsd.tool("xenstore-read", "/private", guest=True).returncode == 1
    assert xsd.tool("xenstore-write", "/shared/ro", "changed", guest=True).returncode == 1
    assert xsd.call(xsd.store.read, "/shared/ro") == b"v"
    # a relative path is the guest's own home, which it may write once it owns it
    xsd.call(xsd.store.mkdir, f"/local/domain/{GUEST}/data")
    xsd.call(xsd.store.set_perms, f"/local/domain/{GUEST}/data", [Perm(GUEST, "n")])
    assert xsd.tool("xenstore-write", "data/x", "1", guest=True).returncode == 0
    assert xsd.call(xsd.store.get_perms, f"/local/domain/{GUEST}/data/x")[0] == Perm(GUEST, "n")


def test_list_of_a_huge_directory_uses_directory_part(xsd: ServerThread) -> None:
    names = [f"child-with-a-rather-long-name-{i:04d}" for i in range(300)]  # > 4096 bytes listed

    def fill() -> None:
        for name in names:
            xsd.store.write(f"/big/{name}", "")

    xsd.call(fill)
    listed = xsd.tool("xenstore-list", "/big")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == names


def test_watch_reports_registration_and_changes(xsd: ServerThread) -> None:
    env = {"PATH": "/usr/bin:/bin", "XENSTORED_PATH": str(xsd.env.path)}
    with subprocess.Popen(
        ["/usr/bin/xenstore-watch", "-n", "3", "/w"], env=env, stdout=subprocess.PIPE, text=True
    ) as watcher:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().strip() == "/w"  # fired on registration
        xsd.tool("xenstore-write", "/w/a", "1")
        assert watcher.stdout.readline().strip() == "/w/a"
        xsd.call(xsd.store.rm, "/w")
        assert watcher.stdout.readline().strip() == "/w"
        assert watcher.wait(5) == 0


def test_xen_test_suite_passes(xsd: ServerThread, test_xenstore: str) -> None:
    """Xen's test-xenstore: reads, writes, dirs, rm, empty/rmw/aborted/conflicting
    transactions, each with its own checks; exit 0 only if all pass."""
    listed = xsd.tool(test_xenstore, "--list-tests").stdout.splitlines()
    names = [line.split(":")[0].strip() for line in listed]
    assert len(names) == 12 and "ta err" in names
    started = time.monotonic()
    result = xsd.tool(test_xenstore, "--iterations", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == names
    assert all("avg:" in line and "failed" not in line for line in lines)
    assert time.monotonic() - started < 10
    # it cleans up after itself: its subtree is gone
    assert xsd.call(xsd.store.directory, "/local/domain/0") == []


def test_xen_test_suite_random_mode(xsd: ServerThread, test_xenstore: str) -> None:
    """test-xenstore --random: tests in random order for a second; stops at the first failure."""
    result = xsd.tool(test_xenstore, "--random", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed" not in result.stdout and "Exhaustive" not in result.stdout
