"""Xen 4.17's own xl.cfg parser (libxlutil, Debian libxenmisc4.17) through ctypes.

`parse(text)` reads a cfg with `xlu_cfg_readdata`, exactly as xl reads a file; `Cfg`
reads keys back with xlu_cfg_get_string/long/list, and turns a `disk=` or `pci=` item
into libxl's own structure with libxlutil's device parsers (`xlu_disk_parse`,
`xlu_pci_parse_spec_string`), printed by libxl's JSON generator (`libxl_device_*_gen_json`
through libyajl): the same JSON field names `xl create -n` prints. No struct layout is
declared here: the structures are opaque buffers that libxl initialises and disposes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

LIBXLUTIL = "libxlutil.so.4.17"
LIBXENLIGHT = "libxenlight.so.4.17"
LIBYAJL = "libyajl.so.2"
STRUCT_BYTES = 4096  # more than any libxl_device_* in 4.17 (libxl initialises the rest)
ESRCH = 3  # xlu_cfg_get_*: no such key


def _load(name: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(name)
    except OSError as exc:  # a proof that cannot run is a failure, never a skip
        pytest.fail(f"cannot load {name} ({exc}): install Debian's xen-utils-4.17 (scripts/test installs it)")


class _Libs:
    def __init__(self) -> None:
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.xlu = _load(LIBXLUTIL)
        self.xl = _load(LIBXENLIGHT)
        self.yajl = _load(LIBYAJL)
        vp, cp, ip = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        self._sig(self.libc.open_memstream, vp, ctypes.POINTER(vp), ctypes.POINTER(ctypes.c_size_t))
        self._sig(self.libc.fflush, ip, vp)
        self._sig(self.libc.fclose, ip, vp)
        self._sig(self.libc.free, None, vp)
        self._sig(self.xlu.xlu_cfg_init, vp, vp, cp)
        self._sig(self.xlu.xlu_cfg_readdata, ip, vp, cp, ip)
        self._sig(self.xlu.xlu_cfg_destroy, None, vp)
        self._sig(self.xlu.xlu_cfg_get_string, ip, vp, cp, ctypes.POINTER(cp), ip)
        self._sig(self.xlu.xlu_cfg_get_long, ip, vp, cp, ctypes.POINTER(ctypes.c_long), ip)
        self._sig(self.xlu.xlu_cfg_get_list, ip, vp, cp, ctypes.POINTER(vp), ctypes.POINTER(ip), ip)
        self._sig(self.xlu.xlu_cfg_get_listitem, cp, vp, ip)
        self._sig(self.xlu.xlu_disk_parse, ip, vp, ip, ctypes.POINTER(cp), vp)
        self._sig(self.xlu.xlu_pci_parse_spec_string, ip, vp, vp, cp)
        for kind in ("disk", "pci"):
            self._sig(getattr(self.xl, f"libxl_device_{kind}_init"), None, vp)
            self._sig(getattr(self.xl, f"libxl_device_{kind}_dispose"), None, vp)
            self._sig(getattr(self.xl, f"libxl_device_{kind}_gen_json"), ip, vp, vp)
        self._sig(self.yajl.yajl_gen_alloc, vp, vp)
        self._sig(self.yajl.yajl_gen_get_buf, ip, vp, ctypes.POINTER(vp), ctypes.POINTER(ctypes.c_size_t))
        self._sig(self.yajl.yajl_gen_free, None, vp)

    @staticmethod
    def _sig(fn: Any, restype: Any, *argtypes: Any) -> None:
        fn.restype = restype
        fn.argtypes = list(argtypes)


_LIBS: _Libs | None = None


def libs() -> _Libs:
    global _LIBS
    if _LIBS is None:
        _LIBS = _Libs()
    return _LIBS


class CfgError(Exception):
    """libxlutil refused the text; the message is what it printed (file:line: error)."""


class Cfg:
    """A parsed xl.cfg; use through `parse`."""

    def __init__(self, handle: int, libs_: _Libs, report: Callable[[], str]) -> None:
        self._cfg = handle
        self._libs = libs_
        self._report = report

    def string(self, key: str) -> str | None:
        value = ctypes.c_char_p()
        rc = self._libs.xlu.xlu_cfg_get_string(self._cfg, key.encode(), ctypes.byref(value), 1)
        if rc == ESRCH:
            return None
        assert rc == 0, f"{key}: xlu_cfg_get_string failed ({rc}): not a string"
        assert value.value is not None
        return value.value.decode()

    def long(self, key: str) -> int | None:
        value = ctypes.c_long()
        rc = self._libs.xlu.xlu_cfg_get_long(self._cfg, key.encode(), ctypes.byref(value), 1)
        if rc == ESRCH:
            return None
        assert rc == 0, f"{key}: xlu_cfg_get_long failed ({rc}): not a number"
        return value.value

    def items(self, key: str) -> list[str]:
        """The strings of list `key` ([] when absent), as xl's parse_config_data reads them."""
        handle, count = ctypes.c_void_p(), ctypes.c_int()
        rc = self._libs.xlu.xlu_cfg_get_list(self._cfg, key.encode(), ctypes.byref(handle), ctypes.byref(count), 1)
        if rc == ESRCH:
            return []
        assert rc == 0, f"{key}: xlu_cfg_get_list failed ({rc}): not a list"
        found = []
        for index in range(count.value):
            item = self._libs.xlu.xlu_cfg_get_listitem(handle, index)
            assert item is not None, f"{key}[{index}] is not a string"
            found.append(item.decode())
        return found

    def disk(self, spec: str) -> dict[str, Any]:
        """`spec` through xlu_disk_parse (as xl's parse_disk_config), as libxl JSON."""
        return self._device("disk", lambda buf: self._libs.xlu.xlu_disk_parse(
            self._cfg, 1, (ctypes.c_char_p * 1)(spec.encode()), buf), spec)

    def pci(self, spec: str) -> dict[str, Any]:
        """`spec` through xlu_pci_parse_spec_string (as xl's pci= parsing), as libxl JSON."""
        return self._device("pci", lambda buf: self._libs.xlu.xlu_pci_parse_spec_string(
            self._cfg, buf, spec.encode()), spec)

    def _device(self, kind: str, parse: Callable[[Any], int], spec: str) -> dict[str, Any]:
        xl = self._libs.xl
        buf = ctypes.create_string_buffer(STRUCT_BYTES)
        getattr(xl, f"libxl_device_{kind}_init")(buf)
        try:
            rc = parse(buf)
            assert rc == 0, f"libxlutil refused {kind} spec {spec!r} (rc {rc}): {self._report().strip()}"
            return _to_json(self._libs, lambda hand: getattr(xl, f"libxl_device_{kind}_gen_json")(hand, buf))
        finally:
            getattr(xl, f"libxl_device_{kind}_dispose")(buf)


def _to_json(libs_: _Libs, gen: Callable[[int], int]) -> dict[str, Any]:
    hand = libs_.yajl.yajl_gen_alloc(None)
    assert hand, "yajl_gen_alloc failed"
    try:
        assert gen(hand) == 0, "libxl's JSON generator failed"
        data, size = ctypes.c_void_p(), ctypes.c_size_t()
        assert libs_.yajl.yajl_gen_get_buf(hand, ctypes.byref(data), ctypes.byref(size)) == 0
        result: dict[str, Any] = json.loads(ctypes.string_at(data, size.value))
        return result
    finally:
        libs_.yajl.yajl_gen_free(hand)


@contextmanager
def parse(text: str, filename: str = "xl.cfg") -> Iterator[Cfg]:
    """`text` read by libxlutil; CfgError with libxlutil's own messages if it refuses it.
    Every warning libxlutil prints (an unknown escape, a bad token) fails the parse too."""
    lib = libs()
    buf, size = ctypes.c_void_p(), ctypes.c_size_t()
    report = lib.libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    assert report, "open_memstream failed"
    cfg = lib.xlu.xlu_cfg_init(report, filename.encode())
    try:
        data = text.encode()
        rc = lib.xlu.xlu_cfg_readdata(cfg, data, len(data))

        def messages() -> str:
            lib.libc.fflush(report)
            return ctypes.string_at(buf, size.value).decode(errors="replace") if size.value else ""

        if rc != 0 or messages():
            raise CfgError(f"libxlutil: rc {rc}: {messages().strip()}")
        yield Cfg(cfg, lib, messages)
    finally:
        lib.xlu.xlu_cfg_destroy(cfg)
        lib.libc.fclose(report)
        lib.libc.free(buf)
