"""``pytest -n N --dist loadgroup``: the tests that share one expensive fixture run on one worker.

pytest-xdist's loadgroup reads ``xdist_group`` marks by appending ``@group`` to each test's node id on
the worker; pytest 9.2's structured node ids no longer take that (pytest-xdist issue #1386), and
every test then runs wherever it lands, each worker making the fixture again. Here the workers
write the groups they find to a file named by the run's uid, and the controller's scheduler reads
it, so the grouping holds whichever pytest the environment has."""
import json
import tempfile
import uuid
from pathlib import Path

import pytest


def _groups_file(uid: str, worker: str) -> Path:
    return Path(tempfile.gettempdir()) / f"pytest-xdist-groups-{uid}-{worker}.json"


def groups_of(items, fixtures: tuple[str, ...]) -> dict[str, str]:
    """{node id: group} for the items that use one of ``fixtures``; a test that uses two of them
    joins their groups into one, so that every fixture is still made on one worker alone."""
    group = {name: name for name in fixtures}
    for item in items:
        used = {group[name] for name in fixtures if name in item.fixturenames}
        for name in fixtures:
            if group[name] in used:
                group[name] = min(used)
    return {item.nodeid: min(group[n] for n in fixtures if n in item.fixturenames)
            for item in items if any(n in item.fixturenames for n in fixtures)}


class SharedFixtureGroups:
    """Registered only where pytest-xdist is installed (its hooks are unknown to pytest otherwise)."""

    def __init__(self, config: pytest.Config, fixtures: tuple[str, ...]):
        self.fixtures = fixtures
        self.worker = getattr(config, "workerinput", None)
        if self.worker is None and config.getoption("testrunuid") is None:
            config.option.testrunuid = uuid.uuid4().hex  # the workers get it in their workerinput

    @pytest.hookimpl(tryfirst=True)  # before xdist turns the marks into (ignored) node id suffixes
    def pytest_collection_modifyitems(self, config, items):
        groups = groups_of(items, self.fixtures)
        for item in items:
            if item.nodeid in groups:
                item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
        if self.worker is not None:
            _groups_file(self.worker["testrunuid"], self.worker["workerid"]).write_text(json.dumps(groups))

    def pytest_xdist_make_scheduler(self, config, log):
        if config.getvalue("dist") != "loadgroup":
            return None
        from xdist.scheduler import LoadGroupScheduling
        uid = config.getoption("testrunuid")

        class FixtureGroupScheduling(LoadGroupScheduling):
            groups: dict[str, str] | None = None

            def _split_scope(self, nodeid: str) -> str:
                if self.groups is None:  # every worker has written its file before it reports its collection
                    self.groups = {}
                    for path in Path(tempfile.gettempdir()).glob(_groups_file(uid, "*").name):
                        self.groups.update(json.loads(path.read_text()))
                return self.groups.get(nodeid) or super()._split_scope(nodeid)

        return FixtureGroupScheduling(config, log)

    def pytest_unconfigure(self, config):
        if self.worker is None:
            for path in Path(tempfile.gettempdir()).glob(_groups_file(config.getoption("testrunuid"), "*").name):
                path.unlink(missing_ok=True)
