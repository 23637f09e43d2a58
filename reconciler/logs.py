"""Logging for every verb and the agent: one handler on stderr, one line per event.

`setup(verbosity, fmt)` is called by `reconciler.cli.main` before a verb runs (and again
by `watch` if it wants another format: it replaces its own handler, never stacks one).
Verbosity is `-v` count minus `-q` count: 0 WARNING (default), 1 INFO, 2+ DEBUG,
-1 ERROR, -2 or less CRITICAL.

Text format, one line per event (control characters and newlines escaped as `\\n`,
`\\t`, `\\xNN`, so a message can never forge a second line):

    INFO drivers.sim.guests: domain 3 (web) powered off after shutdown vm=web

JSON format (journald, Loki), one object per line:

    {"ts": "2026-12-06T07:40:00.123Z", "level": "info", "logger": "drivers.sim.guests",
     "msg": "domain 3 (web) powered off after shutdown", "vm": "web"}

Structured fields: `log.info("...", extra={"fields": {"vm": "web", "step": "vm/web/create"}})`.
Text appends them as ` key=value`; JSON adds them as keys (a field named like a
reserved key, `ts` `level` `logger` `msg` `exc`, is written as `field_<name>`).
Exceptions (`log.exception`, `exc_info=`) go into `exc` (JSON) or ` exc=...` (text),
their traceback escaped onto the same line.

Secrets: a field named like a secret manifest field (`vncPassword`) and any
`vncpasswd=...` / `"vncPassword": "..."` spelling in a message are written as
`(sensitive)`: a safety net behind the drivers, which never log secrets themselves.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Literal


LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
RESERVED = frozenset({"ts", "level", "logger", "msg", "exc"})
# reconciler.model.common.SECRET_FIELDS and reconciler.secrets.REDACTED, spelled out: this
# module is imported before every verb, and those import pydantic (~0.1 s). A test keeps
# them equal.
SECRET_FIELDS = frozenset({"vncPassword"})
REDACTED = "(sensitive)"

# C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: each one a
# viewer may render as a line break or a terminal may obey. Backslash is escaped too, so
# the escaped text reads back unambiguously.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord("\\"): "\\\\",
                 0x2028: "\\u2028", 0x2029: "\\u2029"})
_SECRET_NAMES = "|".join(sorted({*SECRET_FIELDS, "vncpasswd"}))
_SECRET_TEXT = re.compile(
    rf"""(?i)(\b(?:{_SECRET_NAMES})["']?\s*[=:]\s*)("(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;}}]+)""")


def level_for(verbosity: int) -> int:
    """`-v` count minus `-q` count -> a logging level (WARNING by default)."""
    if verbosity >= 2:
        return logging.DEBUG
    return {1: logging.INFO, 0: logging.WARNING, -1: logging.ERROR}.get(verbosity, logging.CRITICAL)


def escape(text: str) -> str:
    """`text` on one line: control characters and line breaks as backslash escapes."""
    return text.translate(_ESCAPES)


def redact(text: str) -> str:
    """`text` with the value of every `vncpasswd=`-like assignment replaced by (sensitive)."""
    return _SECRET_TEXT.sub(lambda m: m.group(1) + REDACTED, text)


def _fields(record: logging.LogRecord) -> Mapping[str, object]:
    fields = getattr(record, "fields", None)
    if not isinstance(fields, Mapping):
        return {}
    return {str(k): REDACTED if k in SECRET_FIELDS else v for k, v in fields.items()}


def _exc(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    return record.exc_text or None


class TextFormatter(logging.Formatter):
    """`LEVEL logger: message key=value ...`, always one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname} {record.name}: {escape(redact(record.getMessage()))}"
        for key, value in _fields(record).items():
            line += f" {escape(key)}={escape(redact(str(value)))}"
        exc = _exc(self, record)
        if exc:
            line += f" exc={escape(redact(exc))}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (RFC 3339 UTC, ms), level, logger, msg, fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        data: dict[str, object] = {"ts": ts, "level": record.levelname.lower(), "logger": record.name,
                                   "msg": redact(record.getMessage())}
        for key, value in _fields(record).items():
            data[f"field_{key}" if key in RESERVED else key] = redact(value) if isinstance(value, str) else value
        exc = _exc(self, record)
        if exc:
            data["exc"] = redact(exc)
        # ensure_ascii: U+2028 and friends are escaped too, so the object stays one line.
        return json.dumps(data, default=str)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the `sys.stderr` of the moment (a test or a daemonizing caller may swap
    it); its class marks the handler `setup` installed, so a second `setup` replaces it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # emit runs under the handler's lock
        super().emit(record)


_level_before: int | None = None  # the root level before the first setup, for `reset`


def setup(verbosity: int = 0, fmt: LogFormat = "text") -> None:
    """Log to stderr at the level `verbosity` selects, in `fmt`; replaces an earlier setup."""
    global _level_before
    root = logging.getLogger()
    if _level_before is None:
        _level_before = root.level
    _remove(root)
    handler = _Handler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level_for(verbosity))


def reset() -> None:
    """Undo `setup`: `main` calls it when a verb returns, so a caller that runs verbs in
    its own process (tests, an embedding tool) finds logging as it left it."""
    global _level_before
    root = logging.getLogger()
    _remove(root)
    if _level_before is not None:
        root.setLevel(_level_before)
        _level_before = None


def _remove(root: logging.Logger) -> None:
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
        handler.close()
