"""Velero fixtures for the lab tests (the installer itself is helpers.VeleroInstall).

- `velero_factory`: `install(lab, cluster, **options) -> VeleroInstall`; installs done through it are
  uninstalled when the session ends (session-scoped, shared by every Velero test).
- `velero`: Velero (with node-agent) in c1 of the session lab, BSL prefix `velero/c1`.
- `velero_c2`: the same in c2 (prefix `velero/c2`).
- `scratch_lab` / `private_velero`: a separate 1-cluster lab for tests that disturb Velero.
"""
from __future__ import annotations

import pytest
from helpers import VeleroInstall, unique


class VeleroFactory:
    def __init__(self):
        self.installs: list[VeleroInstall] = []

    def __call__(self, lab, cluster: str, **options) -> VeleroInstall:
        for inst in self.installs:
            if inst.lab is lab and inst.cluster == cluster:
                return inst
        inst = VeleroInstall(lab, cluster, **options).install()
        self.installs.append(inst)
        return inst

    def close(self):
        for inst in self.installs:
            try:
                inst.uninstall()
            except Exception:
                pass


@pytest.fixture(scope="session")
def velero_factory():
    factory = VeleroFactory()
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def velero(lab, velero_factory) -> VeleroInstall:
    return velero_factory(lab, "c1", node_agent=True)


@pytest.fixture(scope="session")
def velero_c2(lab, velero_factory) -> VeleroInstall:
    return velero_factory(lab, "c2", node_agent=True)


@pytest.fixture(scope="session")
def velero_installer():
    """The VeleroInstall class, for tests that install with non-default options themselves."""
    return VeleroInstall


@pytest.fixture(scope="session")
def scratch_lab(tmp_path_factory):
    """One extra 1-cluster lab for tests that revoke S3 keys, move the clock, scale Velero down or
    uninstall it (things that would disturb the shared session lab)."""
    from labctl import LabHandle
    handle = LabHandle.up(tmp_path_factory.mktemp("velero-scratch"), clusters=1)
    try:
        yield handle
    finally:
        handle.down()


@pytest.fixture
def private_velero(scratch_lab) -> VeleroInstall:
    """A fresh Velero in c1 of the scratch lab: its own namespace and bucket prefix, uninstalled after."""
    inst = VeleroInstall(scratch_lab, "c1", namespace=unique("velero"), prefix=f"velero/{unique('scratch')}")
    inst.install()
    try:
        yield inst
    finally:
        try:
            inst.uninstall()
        except Exception:
            pass
