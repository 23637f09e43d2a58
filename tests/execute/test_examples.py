"""Every example set applied to an empty simulated host converges: exit 0, every step
done, and `plan --detailed-exitcode` then exits 0 with "No changes" (idempotence)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

EXAMPLES = ("examples/openxt-desktop", "examples/server-host", "manifests")  # the simulated NDVM writes its sentinel


@pytest.mark.parametrize("path", EXAMPLES)
def test_example_converges_and_plan_is_empty_after(path: str, served: Callable[..., Any],
                                                    cli: Callable[..., tuple[int, str, str]]) -> None:
    host = served()
    code, out, err = cli("apply", path)
    assert (code, err) == (0, ""), out
    done = re.search(r"^Apply: (\d+) done, 0 failed, 0 skipped\.$", out, re.M)
    assert done and int(done.group(1)) > 0, out
    assert "` failed." not in out and "has been skipped" not in out
    code, out, _ = cli("plan", path, "--detailed-exitcode")
    assert code == 0, f"not idempotent: plan after apply still shows changes:\n{out}"
    assert "No changes. The host matches the manifests." in out
    running = host.run(lambda ports: ports.toolstack.list_domains())
    assert running and all(d.power == "running" for d in running)
