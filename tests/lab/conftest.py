"""Shared fixtures for lab tests: a session-wide 3-cluster lab and private labs on demand.

`lab`: started once per session with the real CLI (`fleetdr-lab up`) in a temp dir and stopped
at the end; set FLEETDR_LAB_DIR to reuse an already running lab instead (it is left running).
`lab_factory(clusters=1, nodes=1)`: a private lab for tests that break or stop things; every lab
it made is stopped when the test ends.
When a test using a lab fails, the tail of lab.log is attached to the report.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import Apis, delete_namespace, make_namespace, unique  # noqa: E402
from labctl import LabHandle  # noqa: E402

SESSION_CLUSTERS = 3


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    labs = [value for value in item.funcargs.values() if isinstance(value, LabHandle)]
    factory = item.funcargs.get("lab_factory")
    if factory is not None:
        labs.extend(factory.labs)
    for handle in labs:
        if isinstance(handle, LabHandle):
            report.sections.append((f"lab.log tail ({handle.dir})", handle.log_tail()))


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    reuse = os.environ.get("FLEETDR_LAB_DIR")
    if reuse:
        handle = LabHandle(reuse, owned=False)
        if handle.cli("status", check=False).returncode != 0:
            pytest.fail(f"FLEETDR_LAB_DIR={reuse} but no lab is running there")
        yield handle
        return
    directory = tmp_path_factory.mktemp("lab")
    try:
        handle = LabHandle.up(directory, clusters=SESSION_CLUSTERS)
    except AssertionError as exc:
        tail = LabHandle(directory).log_tail()
        LabHandle(directory).down()
        pytest.fail(f"could not start the session lab: {exc}\nlab.log tail:\n{tail}")
    try:
        yield handle
    finally:
        handle.down()


class LabFactory:
    def __init__(self, base: Path):
        self.base = base
        self.labs: list[LabHandle] = []

    def __call__(self, clusters: int = 1, nodes: int = 1, extra: tuple[str, ...] = ()):
        directory = self.base / f"lab{len(self.labs) + 1}"
        handle = LabHandle(directory)
        self.labs.append(handle)
        LabHandle.up(directory, clusters=clusters, nodes=nodes, extra=extra)
        return handle

    def close(self) -> None:
        for handle in self.labs:
            handle.down()


@pytest.fixture
def lab_factory(tmp_path):
    factory = LabFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def apis(lab):
    """Typed API clients (helpers.Apis) for cluster c1 of the session lab."""
    a = Apis(lab.api("c1"))
    yield a
    a.close()


@pytest.fixture
def ns(apis, request):
    """A fresh namespace in c1 for one test, named after its module, deleted afterwards."""
    name = unique(request.module.__name__.rsplit(".", 1)[-1].replace("test_", "").replace("_", "")[:10])
    make_namespace(apis.core, name)
    yield name
    delete_namespace(apis.core, name)
