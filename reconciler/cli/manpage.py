"""The man page reconciler(1), written from the argparse parser: pure text in, roff out.

`render_manpage(parser)` walks the parser `reconciler.cli.main.build_parser` builds (every
verb and nested verb, their options and help) and adds what argparse does not know:
exit status (DESIGN section 6), environment, files. No date and nothing from the running
machine, so the same code gives the same page. `python -m reconciler.cli.manpage --out
man/reconciler.1` writes the checked-in copy; `--check` names it when it drifted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence

from reconciler import __version__

# Shown once under OPTIONS; every verb also takes them (main._log_options), so the
# sections of the verbs leave them out rather than repeat them fifteen times.
_EVERYWHERE = frozenset({"-h", "--help", "-v", "--verbose", "-q", "--quiet"})

DESCRIPTION = (
    "Operators of Xen hosts keep the host's desired state as YAML manifests in git: VMs, their disks, "
    "NICs, PCI passthrough rules and v4v firewall rules. reconciler checks the manifests (validate), "
    "compares them with what really runs (xenstore, domains, pciback, the v4v firewall) and prints a "
    "dependency-ordered plan (plan), carries it out (apply), or keeps the host converged as an agent "
    "(watch). A host is a live Xen host (xen), the embedded simulated host (sim:DIR), or, for the "
    "verbs that only read, a captured xenstore-ls dump (--observed FILE).",
)

EXIT_STATUS = (
    ("0", "Success: the manifests are valid, the host converged, the files match."),
    ("1", "Any error, usage errors included: invalid manifests (validate), drift of the checked files "
          "(schema --check), a step that failed (apply), an unreadable host or dump. Each error is one line "
          "on standard error, starting with the file and line when it concerns a manifest."),
    ("2", "Only with plan --detailed-exitcode: the plan has changes."),
)

ENVIRONMENT_HEAD = (
    ("RECONCILER_HOST", "The host when --host is not given: sim, sim:DIR or xen. Without it: xen when "
                        "/proc/xen/capabilities says this is a control domain, else sim:.reconciler/sim."),
    ("NO_COLOR", "When set to a non-empty value, no colour in the output (no-color.org); an empty value "
                 "does not count."),
    ("TERM", "dumb: no colour and no progress display."),
)
# The executor's settings (reconciler.execute.settings.ENV): what each one sets.
SETTING_HELP = {
    "parallelism": "Steps apply and watch run at once (the --parallelism flag wins).",
    "attempts": "Tries of one step or host read on a transient error, the first included.",
    "initial_backoff_s": "Seconds of the first pause between tries; it doubles each time.",
    "max_backoff_s": "Seconds the pause between tries never exceeds.",
    "shutdown_timeout_s": "Seconds a graceful shutdown may take before the domain is destroyed.",
    "sentinel_timeout_s": "Seconds a service VM may take to boot to its sentinel.",
    "hook_timeout_s": "Seconds a VM hook (preBoot, ...) may run before its process group is killed.",
}
ENVIRONMENT_TAIL = (
    ("XENSTORED_PATH, XENSTORED_RUNDIR", "Where xenstored listens, found as libxenstore finds it "
                                         "(default /run/xenstored/socket)."),
    ("NOTIFY_SOCKET, WATCHDOG_USEC", "Set by systemd: watch reports readiness and keeps the watchdog fed."),
)

FILES = (
    (".reconciler/sim/", "The default simulated host: its state, xenstored.sock and host.sock (sim serve)."),
    ("/run/xen-reconciler/", "On a Xen host: the agent's lock (agent.lock) and last status (status.json)."),
    ("schemas/*.json", "The JSON Schemas of the manifests, for editors and CI (reconciler schema)."),
)

EXAMPLES = (
    ("Check the manifests, then review what apply would change:",
     "reconciler validate manifests/\nreconciler plan \\-\\-detailed\\-exitcode manifests/"),
    ("Converge the embedded simulated host:", "reconciler apply \\-\\-host sim:.reconciler/sim manifests/"),
    ("Install bash completion for this user:",
     "reconciler \\-\\-print\\-completion bash > \\e\n"
     "    ~/.local/share/bash\\-completion/completions/reconciler"),
)

SEE_ALSO = ("xl(1)", "xl.cfg(5)", "xenstore-ls(1)", "xenstore-write(1)")


def esc(text: str) -> str:
    """Text for a roff line: backslash, dashes and quotes as their escapes (so options
    copy as typed), non-ASCII as \\[uXXXX], control characters dropped, and a leading
    `.` or `'` kept from being read as a request."""
    out: list[str] = []
    for char in text:
        if char == "\\":
            out.append("\\e")
        elif char == "-":
            out.append("\\-")
        elif char == "'":
            out.append("\\(aq")
        elif char == "`":
            out.append("\\(ga")
        elif char == '"':
            out.append("\\(dq")
        elif ord(char) > 126:
            out.append(f"\\[u{ord(char):04X}]")
        elif char in "\t\n\r":
            out.append(" ")
        elif char >= " ":
            out.append(char)
    line = "".join(out)
    return "\\&" + line if line.startswith(".") else line


def _bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def _italic(text: str) -> str:
    return f"\\fI{esc(text)}\\fR"


def _values(action: argparse.Action) -> str:
    """What follows an option, or a positional itself: `\\fIDIR\\fR`, `\\fBtext\\fR|...`."""
    if action.nargs == 0:
        return ""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return "|".join(_bold(str(choice)) for choice in action.choices)
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    names = list(metavar) if isinstance(metavar, tuple) else [metavar]
    if isinstance(action.nargs, int):
        return " ".join(_italic(names[i % len(names)]) for i in range(action.nargs))
    first, rest = _italic(names[0]), " ".join(_italic(name) for name in names[1:])
    if action.nargs == "?":
        return f"[{first}]"
    if action.nargs == "*":
        return f"[{first}...]"
    if action.nargs == "+":
        return f"{first} [{rest}...]" if rest else f"{first}..."
    return first


def _invocation(action: argparse.Action) -> str:
    values = _values(action)
    if not action.option_strings:
        return values
    names = ", ".join(_bold(name) for name in action.option_strings)
    return f"{names} {values}" if values else names


def _help(action: argparse.Action) -> str:
    """The help text with argparse's `%(default)s`, `%(choices)s`... filled in as `--help` does."""
    text = action.help or ""
    if "%" not in text:
        return text
    params: dict[str, object] = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    if action.choices is not None:
        params["choices"] = ", ".join(str(choice) for choice in action.choices)
    return text % dict(params, prog="reconciler")


def _shown(parser: argparse.ArgumentParser, *, top: bool) -> list[argparse.Action]:
    return [action for action in parser._actions  # argparse has no public list of them
            if action.help != argparse.SUPPRESS and not isinstance(action, argparse._SubParsersAction)
            and (top or not set(action.option_strings) <= _EVERYWHERE or not action.option_strings)]


def _synopsis(name: str, parser: argparse.ArgumentParser, *, top: bool) -> list[str]:
    """One synopsis paragraph: options in brackets, one of a mutually exclusive
    group as `[a | b]`, then the positionals."""
    grouped = {id(action): group for group in parser._mutually_exclusive_groups for action in group._group_actions}
    parts: list[str] = []
    done: set[int] = set()
    for action in parser._actions:
        if id(action) in done or action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        if not top and set(action.option_strings) <= _EVERYWHERE:
            continue
        group = grouped.get(id(action))
        members = group._group_actions if group is not None else [action]
        done.update(id(member) for member in members)
        alternatives = " | ".join(f"{_bold(m.option_strings[0])} {_values(m)}".rstrip() for m in members)
        required = group.required if group is not None else action.required
        parts.append(alternatives if required and group is None else f"({alternatives})" if required
                     else f"[{alternatives}]")
    for action in parser._actions:
        if not action.option_strings:
            parts.append(_italic(action.metavar) if isinstance(action, argparse._SubParsersAction)
                         and isinstance(action.metavar, str) else _values(action))
    return [f'.SY "{esc(name)}"', " ".join(parts), ".YS"]


def _options(parser: argparse.ArgumentParser, *, top: bool) -> list[str]:
    lines: list[str] = []
    for action in _shown(parser, top=top):
        lines += [".TP", _invocation(action), esc(_help(action)) or "(no description)"]
    return lines


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _verbs(name: str, parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(full name, one-line help, parser) of every verb under `parser`, nested ones after
    their parent, in the order `--help` lists them."""
    sub = _subparsers(parser)
    if sub is None:
        return
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    for verb, verb_parser in sub.choices.items():
        full = f"{name} {verb}"
        yield full, helps.get(verb, ""), verb_parser
        yield from _verbs(full, verb_parser)


def _verb_section(full: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f'.SS "{esc(full)}"', *_synopsis(full, parser, top=False)]
    text = parser.description or (summary[:1].upper() + summary[1:] + "." if summary else "")
    if text:
        lines += [".PP", esc(text)]
    sub = _subparsers(parser)
    if sub is not None:
        lines += [".PP", "Its commands are below, each as " + _bold(f"{full} COMMAND") + "."]
    return lines + _options(parser, top=False)


def _pairs(pairs: Sequence[tuple[str, str]], *, bold: bool) -> list[str]:
    lines: list[str] = []
    for term, text in pairs:
        lines += [".TP", _bold(term) if bold else esc(term), esc(text)]
    return lines


def _environment() -> list[tuple[str, str]]:
    from reconciler.execute.settings import ENV, ExecuteSettings

    defaults = {name: field.default for name, field in ExecuteSettings.__dataclass_fields__.items()}
    settings = [(variable, f"{SETTING_HELP[name]} Default: {defaults[name]:g}.")
                for name, variable in ENV.items()]
    return [*ENVIRONMENT_HEAD, *settings, *ENVIRONMENT_TAIL]


def render_manpage(parser: argparse.ArgumentParser) -> str:
    """reconciler(1) in roff (man macros), from `parser` and the tables above."""
    prog = parser.prog
    lines = [
        f'.\\" Generated by python -m reconciler.cli.manpage from the argparse parser; do not edit.',
        f'.TH {prog.upper()} 1 "" "{prog} {__version__}" "User Commands"',
        ".\\\" Left-aligned, unhyphenated: option names and paths stay whole and copy as typed.",
        ".ad l",
        ".nr HY 0",
        ".nh",
        ".SH NAME",
        f"{prog} \\- {esc((parser.description or '').rstrip('.'))}",
        ".SH SYNOPSIS",
        *_synopsis(prog, parser, top=True),
        ".SH DESCRIPTION",
        *[line for paragraph in DESCRIPTION for line in (".PP", esc(paragraph))],
        ".PP",
        "The verbs, each described under " + _bold("COMMANDS") + ":",
    ]
    verbs = list(_verbs(prog, parser))
    lines += _pairs([(full.removeprefix(prog + " "), summary) for full, summary, _ in verbs
                     if full.count(" ") == 1], bold=True)
    lines += [".SH OPTIONS", ".PP", "Options before the verb. " + _bold("-h") + ", " + _bold("-v") + " and "
              + _bold("-q") + " are also taken after any verb.", *_options(parser, top=True)]
    lines.append(".SH COMMANDS")
    for full, summary, verb_parser in verbs:
        lines += _verb_section(full, summary, verb_parser)
    lines += [".SH EXIT STATUS", *_pairs(EXIT_STATUS, bold=True)]
    lines += [".SH ENVIRONMENT", *_pairs(_environment(), bold=True)]
    lines += [".SH FILES", *_pairs(FILES, bold=False)]
    lines.append(".SH EXAMPLES")
    for text, command in EXAMPLES:
        lines += [".PP", esc(text), ".PP", ".nf", ".RS 4", command, ".RE", ".fi"]
    lines += [".SH SEE ALSO", ",\n".join(_see_also(page) for page in SEE_ALSO)]
    return "\n".join(lines) + "\n"


def _see_also(page: str) -> str:
    name, _, section = page.partition("(")
    return f".BR {esc(name)} ({section}"


def main(argv: Sequence[str] | None = None) -> int:
    from reconciler.cli.generated import write_or_check
    from reconciler.cli.main import build_parser

    parser = argparse.ArgumentParser(prog="python -m reconciler.cli.manpage",
                                     description="Write or check the man page generated from the parser.")
    parser.add_argument("--out", default="man/reconciler.1", metavar="FILE",
                        help="the page to write (default: man/reconciler.1)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if FILE differs")
    args = parser.parse_args(argv)
    return write_or_check({args.out: render_manpage(build_parser())}, check=args.check,
                          command=f"python -m reconciler.cli.manpage --out {args.out}")


if __name__ == "__main__":
    sys.exit(main())
