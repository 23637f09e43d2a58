"""The dump importer on the three real xen-devel dumps and on each quirk of the format.

Real data: verbatim copies in tests/data/xenstore-dumps/ (first line names the
public source). Synthetic lines are written the way xenstore_client.c prints them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.dump import DumpResult, load_dump, parse_dump
from drivers.dump_lines import escape
from reconciler.errors import UsageError

DUMPS = Path(__file__).resolve().parent / "data" / "xenstore-dumps"
HVM_2019 = DUMPS / "xen-devel-2019-06-hvm-qdisk-xenstore-ls.txt"
RPI4_2022 = DUMPS / "xen-devel-2022-11-rpi4-pvh-phy-xenstore-ls.txt"
PCI_GREP_2021 = DUMPS / "xen-devel-2021-09-pci-backend-grep.txt"


@pytest.fixture(scope="module")
def hvm() -> DumpResult:
    return load_dump(str(HVM_2019))


@pytest.fixture(scope="module")
def rpi4() -> DumpResult:
    return load_dump(str(RPI4_2022))


@pytest.fixture(scope="module")
def pci() -> DumpResult:
    return load_dump(str(PCI_GREP_2021))


# --- the real dumps ---


def test_hvm_2019_reads_every_line_without_problems(hvm: DumpResult) -> None:
    assert hvm.problems == []
    assert hvm.notes == [(1, "comment skipped")]
    # 329 lines: the `# source:` header, then one node per line.
    assert len(hvm.nodes) == 328
    assert not hvm.truncated and not hvm.perms


def test_hvm_2019_concrete_values(hvm: DumpResult) -> None:
    n = hvm.nodes
    assert n["/local/domain/37/name"] == "guest_centos7"
    assert n["/local/domain/37/vm"] == "/vm/9a6857f8-05a0-4c8d-92c3-1ea04bc28c32"
    assert n["/local/domain/0/backend/qdisk/37/51712/params"] == "qcow2:/home/nervalusr/chao/centos.qcow2"
    assert n["/local/domain/0/backend/qdisk/37/51712/state"] == "4"
    assert n["/local/domain/0/backend/qdisk/0/51712/state"] == "2"
    assert n["/local/domain/0/backend/vif/37/0/type"] == "vif_ioemu"
    assert n["/local/domain/37/device/vif/0/queue-3/event-channel-rx"] == "45"
    assert n["/local/domain/37/memory/target"] == "16760832"
    assert n["/local/domain/37/control/platform-feature-xs_reset_watches"] == "1"
    assert n["/vm/9a6857f8-05a0-4c8d-92c3-1ea04bc28c32/image/ostype"] == "hvm"
    assert n["/vm/9a6857f8-05a0-4c8d-92c3-1ea04bc28c32/rtc/timeoffset"] == ""
    assert n["/libxl/pciback/0000-88-00-0/driver_path"] == "/sys/bus/pci/drivers/intel_nnp"
    assert n["/libxl/37/device/vusb/0/port/1"] == "1-4"
    assert n["/libxl/37/type"] == "hvm"
    # siblings after a deep subtree land back at the right depth
    assert n["/local/domain/0/name"] == "Domain-0"
    assert n["/tool/xenstored"] == ""


def test_hvm_2019_tree_shape(hvm: DumpResult) -> None:
    top = sorted(p for p in hvm.nodes if p.count("/") == 1)
    assert top == ["/libxl", "/local", "/tool", "/vm"]
    domains = sorted(p for p in hvm.nodes if p.count("/") == 3 and p.startswith("/local/domain/"))
    assert domains == ["/local/domain/0", "/local/domain/37"]
    frontends = sorted(p for p in hvm.nodes if p.count("/") == 6 and p.startswith("/local/domain/37/device/"))
    assert frontends == [
        "/local/domain/37/device/suspend/event-channel",
        "/local/domain/37/device/vbd/51712",
        "/local/domain/37/device/vif/0",
        "/local/domain/37/device/vkbd/0",
    ]


def test_rpi4_2022_quoted_dump(rpi4: DumpResult) -> None:
    assert rpi4.problems == []
    assert rpi4.notes == [
        (1, "comment skipped"),
        (2, "shell prompt skipped: 'xenstore-ls'"),
        (294, "shell prompt skipped"),
    ]
    assert len(rpi4.nodes) == 291  # 294 lines minus header and two prompts
    n = rpi4.nodes
    assert n["/local/domain/1/memory/static-max"] == "2097152"
    assert n["/local/domain/1/name"] == "guest2"
    assert n["/local/domain/0/backend/vbd/1/51712/physical-device"] == "7:0"
    assert n["/local/domain/0/backend/vbd/1/51712/script"] == "/etc/xen/scripts/block"
    assert n["/local/domain/0/backend/vif/1/0/mac"] == "e4:5f:01:cd:7b:dd"
    assert n["/local/domain/1/device/vbd/51712/queue-1/ring-ref"] == "9"
    assert n["/libxl/1/device/vif/0/hotplug-status"] == ""
    assert n["/libxl/1/type"] == "pvh"
    assert "/tool/xenstored" in n and ">" not in "".join(n)


def test_pci_grep_2021_partial_dump_exact(pci: DumpResult) -> None:
    be = "/local/domain/0/backend/pci/2/0"
    fe = "/local/domain/2/device/pci/0"
    expected = {
        "/local": "", "/local/domain": "", "/local/domain/0": "",
        "/local/domain/0/backend": "",  # not in the grep output: implied parents
        "/local/domain/0/backend/pci": "", "/local/domain/0/backend/pci/2": "", be: "",
        f"{be}/frontend": fe, f"{be}/frontend-id": "2", f"{be}/online": "1",
        f"{be}/state": "1", f"{be}/domain": "DomU", f"{be}/key-0": "0000:03:00.0",
        f"{be}/dev-0": "0000:03:00.0",
        f"{be}/opts-0": "msitranslate=0,power_mgmt=0,permissive=0,rdm_policy=strict",
        f"{be}/state-0": "1", f"{be}/num_devs": "1",
        "/local/domain/2": "", "/local/domain/2/device": "",
        "/local/domain/2/device/pci": "", fe: "", f"{fe}/backend": be,
        f"{fe}/backend-id": "0", f"{fe}/state": "1",
        "/libxl": "", "/libxl/pci": "", "/libxl/pci/0000-03-00-0": "",
        "/libxl/pci/0000-03-00-0/domid": "2",
    }
    assert pci.nodes == expected
    assert pci.problems == []


# --- synthetic quirks ---


@pytest.mark.parametrize(
    "value",
    ["tab\there", "two\nlines", "cr\r", "back\\slash", "bell\x07", "nul\x00end", "esc\x1b[0m",
     "del\x7f", "caf\u00e9", 'say "hi"', "trailing\\", ""],
)
def test_escapes_round_trip(value: str) -> None:
    for line in (f'/data/k = "{escape(value)}"', f'data = ""\n k = "{escape(value)}"'):
        result = parse_dump(line, "t")
        assert result.nodes["/data/k"] == value, line
        assert result.problems == []


def test_escapes_written_by_hand() -> None:
    result = parse_dump(r'k = "a\tb\\c\001\x7f\"q\x41"', "t")
    assert result.nodes["/k"] == 'a\tb\\c\x01\x7f"qA'


def _tree_line(depth: int, name: str, value: str, width: int = 80) -> str:
    """A line as do_ls prints it without -f: cut to `width` with a `\\...` marker."""
    linewid = depth + len(name)
    sanitised = escape(value)
    if width < linewid + len(value.encode()) + 8:
        return " " * depth + f'{name} = "{sanitised[: width - 8 - linewid]}\\..."'
    return " " * depth + f'{name} = "{sanitised}"'


def test_truncated_value_keeps_prefix_and_is_marked() -> None:
    long = "/home/root/guest2/xen-guest-image-minimal-raspberrypi4-64-with-a-long-name.ext3"
    text = "\n".join(["a = \"\"", " b = \"\"", _tree_line(2, "params", long), _tree_line(2, "ok", "x")])
    assert len(text.splitlines()[2]) == 81  # what xenstore-ls prints when not on a tty
    result = parse_dump(text, "t")
    assert result.truncated == {"/a/b/params"}
    assert result.nodes["/a/b/params"] == long[: 80 - 8 - 8]
    assert result.nodes["/a/b/ok"] == "x"
    assert result.problems == []


def test_truncation_inside_an_escape_drops_the_partial_escape() -> None:
    result = parse_dump('k = "abc\\x4\\..."', "t")
    assert result.nodes["/k"] == "abc" and result.truncated == {"/k"}


def test_escaped_backslash_before_dots_is_not_truncation() -> None:
    result = parse_dump(r'k = "dir\\..."', "t")
    assert result.nodes["/k"] == "dir\\..." and not result.truncated


def test_value_wrapped_by_mail_client_is_joined() -> None:
    text = (
        '> >> /local/domain/0/backend/pci/2/0/opts-0 = "msitranslate=0,power_mgmt=0,\n'
        '> >> permissive=0,rdm_policy=strict"\n'
        '> >> /local/domain/0/backend/pci/2/0/state-0 = "1"\n'
    )
    result = parse_dump(text, "t")
    be = "/local/domain/0/backend/pci/2/0"
    assert result.nodes[f"{be}/opts-0"] == "msitranslate=0,power_mgmt=0,permissive=0,rdm_policy=strict"
    assert result.nodes[f"{be}/state-0"] == "1"
    assert result.problems == []
    assert result.notes == [(1, "value continues on lines 2-2 (wrapped by a mail client); joined")]


def test_tree_value_wrapped_over_three_lines_without_quote_prefix() -> None:
    text = '> vm = ""\n>  cmdline = "root=/dev/xvda1 \nconsole=hvc0 \nquiet"\n>  name = "g"'
    result = parse_dump(text, "t")
    assert result.nodes["/vm/cmdline"] == "root=/dev/xvda1 console=hvc0 quiet"
    assert result.nodes["/vm/name"] == "g"
    assert result.problems == []


def test_unterminated_value_is_a_problem_and_parsing_goes_on() -> None:
    result = parse_dump('a = "open\nb = "fine"', "t")
    assert result.nodes == {"/a": "open", "/b": "fine"}
    assert result.problems == [(1, "value has no closing quote; kept what the line shows")]


def _perm_tree_line(depth: int, name: str, value: str, perms: str) -> str:
    """do_ls with -p and no -f: pad with ' .' up to column 60, then two spaces and perms."""
    line = " " * depth + f'{name} = "{value}" '
    line += "".join("." if col & 1 else " " for col in range(len(line), 60))
    return f"{line}  ({perms})"


def test_fp_output_gives_perms() -> None:
    text = (
        '/local = ""   (n0)\n'
        '/local/domain/37 = ""   (n0,r37)\n'
        '/local/domain/37/name = "guest_centos7"   (n0,r37)\n'
        '/local/domain/37/data = ""   (n37)\n'
    )
    result = parse_dump(text, "t")
    assert result.perms == {
        "/local": "n0", "/local/domain/37": "n0,r37",
        "/local/domain/37/name": "n0,r37", "/local/domain/37/data": "n37",
    }
    assert result.nodes["/local/domain/37/name"] == "guest_centos7"
    assert "/local/domain" in result.nodes and "/local/domain" not in result.perms


def test_tree_p_output_with_dot_padding() -> None:
    text = "\n".join([
        _perm_tree_line(0, "local", "", "n0"),
        _perm_tree_line(1, "domain", "", "n0"),
        _perm_tree_line(2, "37", "", "n0,r37"),
        _perm_tree_line(3, "name", "guest", "n0,r37"),
    ])
    assert ". ." in text
    result = parse_dump(text, "t")
    assert result.nodes["/local/domain/37/name"] == "guest"
    assert result.perms["/local/domain/37"] == "n0,r37"
    assert result.problems == []


def test_garbage_lines_are_reported_with_line_numbers() -> None:
    text = "\n".join([
        'tool = ""',  # 1
        "Sorry, forgot the attachment.",  # 2
        ' xenstored = ""',  # 3
        "key = unquoted",  # 4
        '   orphan = "too deep"',  # 5
        '/bad//path = "x"',  # 6
        'local = ""',  # 7
    ])
    result = parse_dump(text, "t")
    assert [line for line, _ in result.problems] == [2, 4, 5, 6]
    assert "not a xenstore-ls line" in result.problems[0][1]
    assert "cannot tell where it belongs" in result.problems[2][1]
    assert "not a valid xenstore path" in result.problems[3][1]
    assert result.nodes == {"/tool": "", "/tool/xenstored": "", "/local": ""}
    assert result.problem_lines()[0].startswith("t:2: ")


def test_prompt_with_a_path_roots_the_tree_there() -> None:
    text = 'root@dom0:~# xenstore-ls /local/domain/37\nname = "g"\ncpu = ""\n 0 = ""\n'
    result = parse_dump(text, "t")
    assert result.nodes["/local/domain/37/name"] == "g"
    assert result.nodes["/local/domain/37/cpu/0"] == ""
    assert result.nodes["/local/domain"] == ""


def test_quote_prefix_without_space_keeps_indentation() -> None:
    result = parse_dump('>tool = ""\n> xenstored = ""\n>local = ""', "t")
    assert result.nodes == {"/tool": "", "/tool/xenstored": "", "/local": ""}


def test_inconsistent_quote_prefixes() -> None:
    text = '> >> a = ""\n>>>  b = ""\n>> >   c = "x"\n> > > d = ""'
    result = parse_dump(text, "t")
    assert result.nodes == {"/a": "", "/a/b": "", "/a/b/c": "x", "/d": ""}


def test_unreadable_value_and_conflicting_duplicate() -> None:
    text = 'a:\n/b = "1"\n/b = "2"\n/b = "2"'
    result = parse_dump(text, "t")
    assert result.nodes == {"/a": "", "/b": "2"}
    assert [line for line, _ in result.problems] == [1, 3]
    assert "already listed on line 2" in result.problems[1][1]


def test_crlf_and_bom() -> None:
    result = parse_dump('\ufefftool = ""\r\n xenstored = "x"\r\n', "t")
    assert result.nodes == {"/tool": "", "/tool/xenstored": "x"}


def test_load_dump_reports_bad_utf8_by_line(tmp_path: Path) -> None:
    dump = tmp_path / "d.txt"
    dump.write_bytes(b'a = "1"\nb = "\xff\xfe"\nc = "3"\n')
    result = load_dump(str(dump))
    assert result.problems == [(2, "line is not valid UTF-8; bad bytes replaced by U+FFFD")]
    assert result.nodes["/c"] == "3"


def test_load_dump_refuses_huge_and_missing_files(tmp_path: Path) -> None:
    dump = tmp_path / "big.txt"
    dump.write_text('a = "1"\n' * 10)
    with pytest.raises(UsageError, match="big.txt"):
        load_dump(str(dump), max_bytes=20)
    with pytest.raises(UsageError, match="nothere.txt"):
        load_dump(str(tmp_path / "nothere.txt"))


def test_perms_wrapped_onto_their_own_line() -> None:
    # As in a 2022 xen-devel thread: `-fp` output whose long lines lost their perms
    # to the next line when quoted six times over.
    text = (
        '>>>>>> /local/domain/2/device/vif/0/backend = "/local/domain/1/backend/vif/2/0"\n'
        ">>>>>> (n2,r1)\n"
        '>>>>>> /local/domain/2/device/vif/0/backend-id = "1"   (n2,r1)\n'
        '>>>>>> /local/domain/2/error/device/vif/0/error = "1 allocating event channel"\n'
        ">>>>>> (n2)\n"
        "  (n0)\n"
    )
    result = parse_dump(text, "t")
    vif = "/local/domain/2/device/vif/0"
    assert result.nodes[f"{vif}/backend"] == "/local/domain/1/backend/vif/2/0"
    assert result.perms[f"{vif}/backend"] == "n2,r1"
    assert result.perms["/local/domain/2/error/device/vif/0/error"] == "n2"
    assert result.problems == [(6, "not a xenstore-ls line: '(n0)'")]


def test_unreadable_value_keeps_its_perms() -> None:
    result = parse_dump("/local/domain/5/secret:  (n5)", "t")
    assert result.nodes["/local/domain/5/secret"] == ""
    assert result.perms["/local/domain/5/secret"] == "n5"


@pytest.mark.parametrize("text", ["", "myhost\n", "# only a comment\n\n"])
def test_load_dump_refuses_a_file_with_no_xenstore_node(tmp_path: Path, text: str) -> None:
    # `plan --observed /etc/hostname` planned "create everything" against it before.
    dump = tmp_path / "hostname"
    dump.write_text(text)
    with pytest.raises(UsageError, match=r"hostname: no xenstore node in it.*expected the output of xenstore-ls"):
        load_dump(str(dump))
