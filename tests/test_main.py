"""The entry point's own promises (DESIGN section 6): every error is one line and exit 1."""

from __future__ import annotations

import pytest

from reconciler.cli import main, validate


def test_ctrl_c_outside_apply_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(validate, "run", interrupted)
    assert main.main(["validate", "."]) == 1
    assert capsys.readouterr().err == "reconciler: error: interrupted\n"
