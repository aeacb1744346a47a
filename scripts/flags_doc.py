"""Write docs/flags.md: every flag of every entry point, by group, with its default and help string.

    python scripts/flags_doc.py            # rewrite docs/flags.md
    python scripts/flags_doc.py --check    # exit 1 if docs/flags.md is stale

The page is generated from the parsers themselves, so it can never list a flag that does not
exist or miss one that does; the test suite runs ``--check``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ENTRY_POINTS = ("pretrain_cond", "transfer_linear_eval", "transfer_few_shot", "transfer_looc_probe")
OUT = os.path.join(ROOT, "docs", "flags.md")


def _default(action: argparse.Action) -> str:
    if "default:" in (action.help or ""):  # the help says it (e.g. one that depends on the machine)
        return ""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or action.nargs == 0:
        return "off" if not action.default else "on"
    if action.default in (None, argparse.SUPPRESS):
        return ""
    if isinstance(action.default, (list, tuple)):
        return " ".join(str(v) for v in action.default)
    return str(action.default)


def _row(action: argparse.Action) -> str:
    flags = ", ".join(f"`{s}`" for s in action.option_strings)
    if action.choices:
        flags += " {" + ",".join(str(c) for c in action.choices) + "}"
    default = _default(action)
    text = " ".join((action.help or "").split()).replace("|", "\\|")
    return f"| {flags} | {('`' + default + '`') if default else ''} | {text} |"


def entry_point_section(name: str) -> str:
    """The Markdown section of one entry point: one table per argument group."""
    parser = importlib.import_module(name).build_parser()
    lines = [f"## `{name}.py`", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.option_strings and a.dest != "help"]
        if not actions:
            continue
        title = "options" if group.title in ("options", "optional arguments") else group.title
        lines += [f"### {title}", "", "| flag | default | what it does |", "|---|---|---|"]
        lines += [_row(a) for a in actions] + [""]
    return "\n".join(lines)


def render() -> str:
    """The whole page."""
    head = ["# Flags", "",
            "Every flag of every entry point, generated from the parsers by `python scripts/flags_doc.py`",
            "(the tests fail when this page is stale). `--help` of each script prints the same text.", ""]
    names = [n for n in ENTRY_POINTS if os.path.exists(os.path.join(ROOT, f"{n}.py"))]
    return "\n".join(head + [entry_point_section(n) for n in names]).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only check that docs/flags.md is up to date")
    a = p.parse_args(argv)
    text = render()
    if a.check:
        current = open(OUT).read() if os.path.exists(OUT) else ""
        if current != text:
            print(f"error: {OUT} is stale; run python scripts/flags_doc.py", file=sys.stderr)
            return 1
        return 0
    with open(OUT, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
