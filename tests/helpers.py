"""Assertions and paths shared by the tests."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def expect_one_line_error(main, argv, capsys, pattern: str) -> None:
    """``main(argv)`` exits with status 2 and a single stderr line 'error: ...' matching ``pattern``."""
    capsys.readouterr()  # drop what earlier runs printed
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: "), err
    assert re.search(pattern, err), err
