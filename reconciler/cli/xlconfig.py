"""`reconciler xl-config PATH... [--vm NAME] [--out DIR]`: the xl.cfg each VM is created with.

For review, and for operators who still run `xl create` by hand. Loads the manifests
(errors print as `validate` prints them, on stderr, exit 1) and renders each VM (all, or
the one `--vm` names) with `drivers.xl.cfg.render_cfg` and `reconciler.build.build_of`,
the same two calls `create` makes. Needs no host, so a PCIPassthrough `match` rule
cannot be resolved: the cfg says so in a comment (and stderr) instead of guessing.
stdout: every cfg, secrets shown as `<redacted>` (still a cfg xl parses). `--out DIR`:
`DIR/<vm>.cfg`, written atomically with mode 0600, secrets in clear: what create uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.errors import ReconcilerError, UsageError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from reconciler.model.devices import PCIPassthrough
    from reconciler.model.state import DesiredState
    from reconciler.model.vm import VM

REDACTED = "<redacted>"
M = TypeVar("M", bound="BaseModel")


class _Once(argparse.Action):
    """`--vm NAME` names one VM (DESIGN 6); given twice, it is refused, not overridden."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if getattr(namespace, self.dest) is not None:
            parser.error(f"{option_string} given twice; it names one VM (leave it out for every VM)")
        setattr(namespace, self.dest, values)


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "xl-config",
        help="print the xl.cfg each VM is created with",
        description="Render the xl.cfg `xl create` gets for each VM of the manifests (secrets "
        "shown as <redacted>), or write them into DIR as <vm>.cfg (mode 0600, secrets in clear).",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or directories")
    parser.add_argument("--vm", metavar="NAME", action=_Once, help="only this VM (default: every VM)")
    parser.add_argument("--out", metavar="DIR", help="write DIR/<vm>.cfg (0600, secrets in clear) instead of printing")
    parser.set_defaults(run=run)


def _redacted(model: M) -> M:
    """`model` with every secret (any SecretStr, however deep) replaced by `<redacted>`:
    rendered again, the cfg keeps its shape (and still parses) without the secret."""
    updates: dict[str, Any] = {}
    for name, value in model:
        redacted = _redacted_value(value)
        if redacted is not value:
            updates[name] = redacted
    return model.model_copy(update=updates) if updates else model


def _redacted_value(value: Any) -> Any:
    from pydantic import BaseModel, SecretStr  # heavy: only when the verb runs

    if isinstance(value, SecretStr):
        return SecretStr(REDACTED)
    if isinstance(value, BaseModel):
        return _redacted(value)
    if isinstance(value, (list, tuple)):
        items = [_redacted_value(item) for item in value]
        return type(value)(items) if any(a is not b for a, b in zip(items, value)) else value
    return value


def _unresolved(desired: DesiredState, vm: str) -> list[PCIPassthrough]:
    """The VM's PCIPassthrough rules that match devices instead of naming a BDF."""
    return sorted((rule for rule in desired.pci.values() if rule.spec.vm == vm and rule.spec.bdf is None),
                  key=lambda rule: rule.metadata.name)


def _pci_note(rule: PCIPassthrough) -> str:
    match = rule.spec.match
    what = f"matches class {match.class_}, vendor {match.vendor}, device {match.device}" if match else "names no device"
    return (f"PCIPassthrough {rule.metadata.name} {what}: the host devices it takes are found in the host's "
            "PCI inventory by plan/apply (no host here), so they are not in pci = [...]")


def render(desired: DesiredState, vm: VM, *, redact: bool) -> tuple[str, list[str]]:
    """The cfg text of `vm`, with the notes on its unresolved PCI rules as comments after
    the header line, and the notes."""
    from drivers.xl.cfg import render_cfg
    from reconciler.build import build_of

    name = vm.metadata.name
    notes = [_pci_note(rule) for rule in _unresolved(desired, name)]
    shown = _redacted(vm) if redact else vm
    try:
        text, _ = render_cfg(shown, build_of(desired, name))
    except ReconcilerError as exc:  # a manifest value xl.cfg cannot carry
        raise UsageError(f"VM {name}: cannot render its xl.cfg: {exc}") from None
    head, newline, body = text.partition("\n") if text.startswith("#") else ("", "", text)
    return head + newline + "".join(f"# {note}\n" for note in notes) + body, notes


def _selected(desired: DesiredState, wanted: str | None) -> list[str]:
    names = sorted(desired.vms)
    if wanted is None:
        return names
    if wanted not in desired.vms:
        valid = ", ".join(names) if names else "none: the manifests hold no VM"
        raise UsageError(f"--vm {wanted}: no such VM in the manifests; valid: {valid}")
    return [wanted]


def _out_dir(out: str) -> None:
    """`--out` names a directory (made, 0700, if missing); a path that exists and is not
    a directory is refused, never written into or replaced."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: exists and is not a directory; --out names the directory for <vm>.cfg files")
    try:
        os.makedirs(out, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot make the directory ({exc.strerror or exc})") from None


def run(args: argparse.Namespace) -> int:
    from reconciler.atomic import write_text_atomic
    from reconciler.cli.plan import load_desired

    desired = load_desired(args.paths)
    if desired is None:
        return 1
    names = _selected(desired, args.vm)
    if args.out is not None:
        _out_dir(args.out)
    rendered = []
    for name in names:  # render all before writing any: a bad VM writes nothing
        text, notes = render(desired, desired.vms[name], redact=args.out is None)
        for note in notes:
            print(f"xl-config: VM {name}: {note}", file=sys.stderr)
        rendered.append((name, text))
    if args.out is None:
        sys.stdout.write("\n".join(text for _, text in rendered))
        return 0
    for name, text in rendered:
        path = os.path.join(args.out, f"{name}.cfg")
        try:
            write_text_atomic(path, text, mode=0o600)
        except OSError as exc:
            raise UsageError(f"--out {args.out}: cannot write {name}.cfg ({exc.strerror or exc})") from None
    print(f"{len(rendered)} xl.cfg file(s) written to {args.out} (mode 0600: they hold secrets in clear)", file=sys.stderr)
    return 0
