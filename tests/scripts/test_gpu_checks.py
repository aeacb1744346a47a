"""scripts/gpu_checks.sh runs on a GPU machine only, so what it would first fail on there is checked here:
its steps exist, and every command it runs parses with its script's flags and selects existing tests."""
import os
import pathlib
import re
import subprocess

import pytest

from tests.helpers import ROOT, load_script


def test_gpu_checks_names_only_steps_it_defines():
    """gpu_checks.sh runs on a GPU machine only, so a misspelt step would first fail there."""
    path = pathlib.Path(ROOT) / "scripts" / "gpu_checks.sh"
    subprocess.run(["bash", "-n", str(path)], check=True)  # it parses
    text = path.read_text()
    defined = set(re.findall(r"^run_(\w+)\(\)", text, flags=re.M))
    default = re.search(r'"\$\{@:-([a-z0-9 ]+)\}"', text).group(1).split()
    header = re.search(r"# Steps: (.*?)\.", text, flags=re.S).group(1).replace("#", " ").split()
    assert set(default) <= defined and len(default) >= 4
    assert set(header) == defined and header[:len(default)] == default  # the header lists the default first


def _k_selects(expr: str, name: str) -> bool:
    """pytest's -k on a test name: words are substrings, joined by and / or / not and brackets."""
    tokens = re.findall(r"\w+|[()]", expr)
    python = " ".join(t if t in ("and", "or", "not", "(", ")") else f"{t!r} in name" for t in tokens)
    return eval(python, {}, {"name": name})  # noqa: S307 - built from word tokens only


def test_every_gpu_checks_command_parses_with_the_scripts_flags(tmp_path, monkeypatch):
    """Each command of every gpu_checks.sh step, expanded by bash (PYTHON=true runs nothing), is parsed by
    the parser of the script it calls, and each pytest selection names existing files and selects a
    test: a renamed flag or test would otherwise first fail on a GPU machine, costing its time."""
    import argparse
    import shlex

    import pretrain_cond
    path = pathlib.Path(ROOT) / "scripts" / "gpu_checks.sh"
    steps = re.search(r"# Steps: (.*?)\.", path.read_text(), flags=re.S).group(1).replace("#", " ").split()
    env = {**os.environ, "PYTHON": "true", "OUT": str(tmp_path), "TMPDIR": str(tmp_path)}
    trace = subprocess.run(["bash", "-x", str(path), " ".join(steps)], cwd=ROOT, env=env, capture_output=True,
                           text=True).stderr
    commands = [shlex.split(m) for m in re.findall(r"^\++ timeout -k 10 \d+ true (.*)$", trace, flags=re.M)]
    assert len(commands) >= len(steps)

    class Parsed(Exception):
        pass
    real = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        real(self, args, namespace)  # a bad flag exits here, as on the GPU machine
        raise Parsed
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    parsed = []
    for argv in commands:
        if argv[:2] == ["-m", "pytest"]:
            files = [a for a in argv if a.startswith("tests/")]
            assert files and all((pathlib.Path(ROOT) / f).is_file() for f in files), argv
            expr = argv[argv.index("-k") + 1]
            names = [n for f in files for n in re.findall(r"^def (test_\w+)", (pathlib.Path(ROOT) / f).read_text(),
                                                        flags=re.M)]
            assert any(_k_selects(expr, n) for n in names), f"-k {expr!r} selects nothing in {files}"
            continue
        script, args = argv[0], argv[1:]
        name = str(pathlib.Path(script).relative_to("scripts").with_suffix("")) if script != "pretrain_cond.py" else ""
        main = pretrain_cond.main if script == "pretrain_cond.py" else load_script(name).main
        with pytest.raises(Parsed):
            main(args)
        parsed.append(script)
    assert {"scripts/bench/bench_pretrain.py", "scripts/bench/profile_step.py", "scripts/bench/bench_augment.py",
            "scripts/bench/bench_decode.py", "scripts/bench/bench_linear_eval.py", "pretrain_cond.py"} <= set(parsed)
