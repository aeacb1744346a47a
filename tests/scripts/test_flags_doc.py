"""docs/flags.md is generated from the entry points' parsers and must match them."""
import argparse

from tests.helpers import load_script

flags_doc = load_script("flags_doc")


def test_flags_page_is_current():
    """A flag added, removed or re-documented without regenerating the page fails here."""
    assert flags_doc.main(["--check"]) == 0, "run: python scripts/flags_doc.py"


def test_every_flag_of_every_entry_point_is_on_the_page():
    text = flags_doc.render()
    for name in flags_doc.ENTRY_POINTS:
        try:
            parser = __import__(name).build_parser()
        except ModuleNotFoundError:
            continue
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert f"`{action.option_strings[0]}`" in text, (name, action.option_strings)
                assert action.help and len(action.help) > 15, (name, action.option_strings)


def test_rows_show_defaults_choices_and_escape_pipes():
    p = argparse.ArgumentParser()
    g = p.add_argument_group("things")
    g.add_argument("--mode", default="a", choices=["a", "b"], help="pick a | b")
    g.add_argument("--on", action="store_true", help="switch it on")
    rows = [flags_doc._row(a) for a in g._group_actions]
    assert rows == ["| `--mode` {a,b} | `a` | pick a \\| b |", "| `--on` | `off` | switch it on |"]
