"""Shared fixtures of the integration tests (playbooks, role, modules, molecule through ansible)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def collections(tmp_path_factory):
    """A private collections tree built by the Makefile's own tool: this checkout as fleetdr.kube
    next to the collections the ansible package bundles. A missing one fails the run."""
    root = tmp_path_factory.mktemp("collections")
    subprocess.run([sys.executable, str(REPO / "tools" / "collections_tree.py"), str(root)], check=True)
    return root
