"""The simulated xenstored's tree through its Python API: the 4.17 C daemon's semantics."""

from __future__ import annotations

import pytest

from drivers.xenstore import CallbackWatcher, Caller, Store, errors
from reconciler.ports import Perm, WatchEvent

GUEST = Caller(5)


def watched(store: Store, path: str, caller: Caller = Caller(0)) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    store.add_watch(CallbackWatcher(events.append, caller), path, "tok")
    return events


def test_write_creates_parents_with_empty_values_in_creation_order() -> None:
    store = Store()
    store.write("/a/b/c", "v")
    store.write("/a/a", "w")
    assert store.read("/a") == b"" and store.read("/a/b") == b"" and store.read("/a/b/c") == b"v"
    assert store.directory("/a") == ["b", "a"]
    assert store.directory("/") == ["a"]


@pytest.mark.parametrize("path", ["a/b", "/a//b", "/a/", "/a b", "", "@introduceDomain"])
def test_invalid_paths_are_einval(path: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        Store().write(path, "x")


def test_rm_rules() -> None:
    store = Store()
    store.write("/a/b/c", "")
    store.rm("/a/zz")  # absent, parent exists: OK
    with pytest.raises(errors.NoEntry):
        store.rm("/nope/zz")  # parent absent too
    with pytest.raises(errors.InvalidArgument):
        store.rm("/")
    store.rm("/a/b")
    assert not store.exists("/a/b/c") and store.directory("/a") == []


def test_new_nodes_inherit_perms_and_a_guest_becomes_owner() -> None:
    store = Store()
    store.mkdir("/home")
    store.set_perms("/home", [Perm(0, "r"), Perm(5, "b")])
    store.write("/home/by-dom0", "")
    store.write("/home/by-guest/deep", "", GUEST)
    assert store.get_perms("/home/by-dom0") == [Perm(0, "r"), Perm(5, "b")]
    assert store.get_perms("/home/by-guest") == [Perm(5, "r"), Perm(5, "b")]
    assert store.get_perms("/home/by-guest/deep") == [Perm(5, "r"), Perm(5, "b")]


def test_permission_checks_for_a_guest() -> None:
    store = Store()
    store.write("/secret/x", "1")
    store.write("/ro", "1")
    store.set_perms("/ro", [Perm(0, "n"), Perm(5, "r")])
    assert store.read("/ro", GUEST) == b"1"
    with pytest.raises(errors.AccessDenied):
        store.write("/ro", "2", GUEST)
    with pytest.raises(errors.AccessDenied):
        store.read("/secret/x", GUEST)
    with pytest.raises(errors.AccessDenied):  # not ENOENT: existence must not leak
        store.read("/secret/missing", GUEST)
    with pytest.raises(errors.AccessDenied):
        store.set_perms("/ro", [Perm(0, "b")], GUEST)  # not the owner


def test_only_dom0_changes_an_owner() -> None:
    store = Store()
    store.mkdir("/g")
    store.set_perms("/g", [Perm(5, "n")])
    store.set_perms("/g", [Perm(5, "r"), Perm(7, "b")], GUEST)  # owner may change the rest
    with pytest.raises(errors.NotPermitted):
        store.set_perms("/g", [Perm(7, "n")], GUEST)
    store.set_perms("/g", [Perm(7, "n")])
    assert store.get_perms("/g") == [Perm(7, "n")]


def test_watch_fires_on_node_and_descendants_and_removed_subtree() -> None:
    store = Store()
    store.write("/a/b/c", "")
    on_a, on_c, on_other = watched(store, "/a"), watched(store, "/a/b/c"), watched(store, "/x")
    store.write("/a/b/c", "1")
    store.rm("/a/b")
    assert [e.path for e in on_a] == ["/a/b/c", "/a/b"]
    assert [e.path for e in on_c] == ["/a/b/c", "/a/b/c"]  # its node went with the subtree
    assert on_other == []


def test_guest_watch_sees_only_readable_nodes() -> None:
    store = Store()
    store.write("/p/open", "")
    store.set_perms("/p/open", [Perm(0, "r")])
    events = watched(store, "/p", GUEST)
    store.write("/p/open", "1")
    store.write("/p/closed", "1")
    assert [e.path for e in events] == ["/p/open"]


def test_transaction_sees_its_snapshot_and_fires_on_commit_only() -> None:
    store = Store()
    store.write("/n", "a")
    events = watched(store, "/n")
    tx = store.transaction()
    assert tx.read("/n") == b"a"
    tx.write("/n", "b")
    assert tx.read("/n") == b"b" and store.read("/n") == b"a" and events == []
    tx.commit()
    assert store.read("/n") == b"b" and [e.path for e in events] == ["/n"]


def test_conflict_only_on_nodes_the_transaction_accessed() -> None:
    store = Store()
    store.write("/read", "1")
    store.write("/other", "1")
    tx = store.transaction()
    tx.read("/read")
    tx.write("/mine", "x")
    store.write("/other", "2")  # untouched by tx: no conflict
    tx.commit()
    tx2 = store.transaction()
    tx2.read("/read")
    tx2.write("/mine", "y")
    store.write("/read", "2")
    with pytest.raises(errors.Again):
        tx2.commit()
    assert store.read("/mine") == b"x"


def test_transaction_rm_and_recreate() -> None:
    store = Store()
    store.write("/d/old", "1")
    tx = store.transaction()
    tx.rm("/d")
    tx.write("/d/new", "2")
    assert tx.directory("/d") == ["new"] and store.directory("/d") == ["old"]
    tx.commit()
    assert store.directory("/d") == ["new"] and not store.exists("/d/old")


def test_domains_introduce_release_and_owned_nodes_go() -> None:
    store = Store()
    intro, release = watched(store, "@introduceDomain"), watched(store, "@releaseDomain")
    store.introduce_domain(5)
    store.mkdir("/local/domain/5/device/vif/0")
    store.set_perms("/local/domain/5/device/vif/0", [Perm(5, "n"), Perm(0, "r")])
    store.write("/shared", "")
    store.set_perms("/shared", [Perm(0, "n"), Perm(5, "r")])
    assert store.is_introduced(5)
    store.release_domain(5)
    assert not store.is_introduced(5)
    assert not store.exists("/local/domain/5/device/vif/0")
    assert store.exists("/local/domain/5/device")
    assert store.get_perms("/shared") == [Perm(0, "n")]
    assert [e.path for e in intro] == ["@introduceDomain"]
    assert [e.path for e in release] == ["@releaseDomain"]
    with pytest.raises(errors.NoEntry):
        store.release_domain(5)


def test_a_shutdown_fires_release_once_and_the_destroy_again() -> None:
    """C xenstored's check_domains: the first time a domain's shutdown flag is seen
    (a poweroff or a crash, VIRQ_DOM_EXC) @releaseDomain fires and the nodes stay; the
    destroy fires it again. Never for dom0 or a domain never introduced."""
    store = Store()
    release = watched(store, "@releaseDomain")
    store.introduce_domain(5)
    store.write("/local/domain/5/name", "web")
    store.shutdown_domain(5)
    store.shutdown_domain(5)
    store.shutdown_domain(0)
    store.shutdown_domain(9)
    assert [e.path for e in release] == ["@releaseDomain"]
    assert store.is_introduced(5) and store.exists("/local/domain/5/name")
    store.release_domain(5)
    assert [e.path for e in release] == ["@releaseDomain", "@releaseDomain"]
    store.introduce_domain(5)  # the domid reused by a new domain: its shutdown fires again
    store.shutdown_domain(5)
    assert len(release) == 3


class Owner:
    """One watch owner (like one socket connection): records (path, token) it is sent."""

    def __init__(self, caller: Caller = Caller(0)) -> None:
        self.caller = caller
        self.got: list[tuple[str, str]] = []

    def deliver(self, path: str, token: str) -> None:
        self.got.append((path, token))


def test_among_thousands_of_watches_exactly_the_covering_ones_fire() -> None:
    """Ancestors of a write fire (not siblings, not descendants of the written node);
    a removed subtree fires every watch on a node in it; special paths fire only exactly."""
    store = Store()
    owner = Owner()
    for i in range(3000):
        store.add_watch(owner, f"/many/n{i}", f"t{i}")
        store.add_watch(owner, f"/many/n{i}/deep/leaf", f"leaf{i}")
    for path in ("/", "/many", "/many/n7/deep", "/many/n70", "/other"):
        store.add_watch(owner, path, f"at{path}")
    store.add_watch(owner, "@introduceDomain", "intro")
    store.write("/many/n7/deep/leaf", "1")
    assert owner.got == [("/many/n7/deep/leaf", "leaf7"), ("/many/n7/deep/leaf", "at/many/n7/deep"),
                         ("/many/n7/deep/leaf", "t7"), ("/many/n7/deep/leaf", "at/many"), ("/many/n7/deep/leaf", "at/")]
    owner.got.clear()
    store.write("/many/n7", "x")  # the watches below n7 stay silent
    assert owner.got == [("/many/n7", "t7"), ("/many/n7", "at/many"), ("/many/n7", "at/")]
    owner.got.clear()
    store.rm("/many/n7")  # its subtree's watches fire with their own paths
    assert sorted(owner.got) == sorted([
        ("/many/n7", "t7"), ("/many/n7", "at/many"), ("/many/n7", "at/"),
        ("/many/n7/deep", "at/many/n7/deep"), ("/many/n7/deep/leaf", "leaf7")])
    owner.got.clear()
    store.introduce_domain(9)
    assert owner.got == [("@introduceDomain", "intro")]


def test_one_of_many_watches_on_one_path_is_removed_by_its_token() -> None:
    store = Store()
    first, second = Owner(), Owner()
    for i in range(2000):
        store.add_watch(first, "/same", f"t{i}")
    store.add_watch(second, "/same", "t5")  # another owner may reuse a (path, token)
    with pytest.raises(errors.AlreadyExists):
        store.add_watch(first, "/same", "t5")
    store.add_watch(first, "/same/child", "t5")  # the same token on another path is another watch
    store.remove_watch(first, "/same", "t5")
    with pytest.raises(errors.NoEntry):
        store.remove_watch(first, "/same", "t5")
    store.write("/same", "1")
    assert [t for _, t in first.got] == [f"t{i}" for i in range(2000) if i != 5]  # in registration order
    assert second.got == [("/same", "t5")]
    store.add_watch(first, "/same", "t5")  # registered again: fires again, now last
    first.got.clear()
    store.remove_watches(second)
    store.write("/same", "2")
    assert [t for _, t in first.got][-1] == "t5" and len(first.got) == 2000 and second.got == [("/same", "t5")]
    store.remove_watches(first)
    assert store.watch_count() == 0
    store.write("/same/child", "3")
    assert len(first.got) == 2000


def test_a_guest_still_has_a_watch_quota() -> None:
    store = Store()
    guest = Owner(GUEST)
    for i in range(128):
        store.add_watch(guest, f"/g/{i}", "t")
    with pytest.raises(errors.TooBig):
        store.add_watch(guest, "/g/more", "t")
    store.remove_watch(guest, "/g/0", "t")
    store.add_watch(guest, "/g/more", "t")


def test_every_persisted_change_is_counted_and_reported() -> None:
    """Special-path permissions and the introduced set are saved with the tree, so a change
    to them is a change for the saver as much as a node write is."""
    store = Store()
    seen: list[int] = []
    store.on_change = lambda: seen.append(store.changes)
    store.set_perms("@introduceDomain", [Perm(0, "r")])
    store.introduce_domain(4)
    store.release_domain(4)  # owns no node: only the introduced set changes
    tx = store.transaction()
    tx.set_perms("@releaseDomain", [Perm(0, "r")])
    assert seen == [1, 2, 3, 4]
