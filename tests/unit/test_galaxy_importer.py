# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""galaxy-importer accepts the built tarball as Galaxy would import it (only this collection installed):
every module's documentation renders, every role has a README, no error or warning."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent

galaxy_importer = pytest.importorskip("galaxy_importer", reason="galaxy-importer is not installed (requirements-dev.txt)")


def test_galaxy_importer_renders_every_module_and_role(tmp_path):
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(tmp_path)],
                   check=True, capture_output=True)
    (tarball,) = tmp_path.glob("fleetdr-kube-*.tar.gz")
    env = dict(os.environ, GALAXY_IMPORTER_CONFIG=str(REPO / "tools" / "galaxy-importer.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",  # as on Galaxy: kubernetes.core is not there
               PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    run = subprocess.run(check=False, args=[str(BIN / "python"), "-m", "galaxy_importer.main", tarball.name], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "Importer processing completed successfully" in output
    assert "ERROR" not in output and "WARNING" not in output, output
    result = json.loads((tmp_path / "importer_result.json").read_text())
    contents = result["docs_blob"]["contents"]
    modules = [c for c in contents if c["content_type"] == "module"]
    assert len(modules) == len(list((REPO / "plugins" / "modules").glob("*.py")))
    assert [c["content_name"] for c in modules if not c.get("doc_strings")] == []
    roles = [c for c in contents if c["content_type"] == "role"]
    assert sorted(c["content_name"] for c in roles) == sorted(p.name for p in (REPO / "roles").iterdir())
    assert [c["content_name"] for c in roles if not c.get("readme_html")] == []
    assert result["requires_ansible"]
