"""scripts/mutation_check.py's mechanics on a toy tree: a mutation the tests catch is killed, one they
miss survives, the tree itself is never changed, and a mutation whose text is gone is reported."""
import pytest

from tests.helpers import load_script


def _toy(tmp_path):
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n")
    return tmp_path


def test_a_caught_mutation_is_killed_and_a_missed_one_survives(tmp_path):
    mc = load_script("mutation_check")
    toy = _toy(tmp_path)
    mutations = [mc.Mutation("minus", "calc.py", "a + b", "a - b", ("test_calc.py",)),
                 mc.Mutation("times", "calc.py", "a + b", "a * b", ("test_calc.py",))]  # 2 * 2 == 2 + 2
    lines = []
    assert mc.run_mutations(str(toy), mutations, timeout=120, log=lines.append) == \
        {"minus": "killed", "times": "SURVIVED"}
    assert lines[0].startswith("killed   minus") and lines[1].startswith("SURVIVED times")
    assert (toy / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"  # mutated in a scratch copy only
    broken = mc.Mutation("syntax", "calc.py", "a + b", "a +", ("test_calc.py",))  # collection error: not a kill
    assert mc.run_mutations(str(toy), [broken], timeout=120, baseline=False, log=lines.append) == {"syntax": "error"}
    (toy / "test_calc.py").write_text("def test_fails():\n    assert False\n")
    with pytest.raises(RuntimeError, match="the unchanged tree failed in test_calc.py"):
        mc.run_mutations(str(toy), mutations, timeout=120, log=lines.append)
    gone = mc.Mutation("gone", "calc.py", "a / b", "a // b", ("test_calc.py",))
    assert mc.check_applicable(str(toy), [mutations[0], gone]) == ["gone: calc.py holds its text 0 times, not once"]


def test_every_listed_mutation_applies_to_this_tree_once():
    mc = load_script("mutation_check")
    assert len(mc.MUTATIONS) >= 20 and len({m.name for m in mc.MUTATIONS}) == len(mc.MUTATIONS)
    assert mc.check_applicable(mc.ROOT, mc.MUTATIONS) == []
