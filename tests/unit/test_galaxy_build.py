# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`ansible-galaxy collection build` ships the collection and its license, and nothing that needs the lab."""

import pathlib
import subprocess
import sys
import tarfile

REPO = pathlib.Path(__file__).resolve().parents[2]
GALAXY = pathlib.Path(sys.executable).with_name("ansible-galaxy")


def test_the_built_collection_has_what_users_need_and_nothing_that_needs_the_lab(tmp_path):
    subprocess.run([str(GALAXY), "collection", "build", str(REPO), "--output-path", str(tmp_path)], check=True, capture_output=True)
    (tarball,) = tmp_path.glob("fleetdr-kube-*.tar.gz")
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    for wanted in ("COPYING", "README.md", "meta/runtime.yml", "plugins/modules/fleet_run.py", "plugins/action/fleet_run.py",
                   "roles/velero/meta/argument_specs.yml", "roles/rook_ceph/meta/argument_specs.yml", "playbooks/backup.yml",
                   "playbooks/drill.yml", "playbooks/drill.meta.yml",
                   # what ansible-builder's introspection reads from an installed collection
                   "meta/execution-environment.yml", "requirements.txt", "bindep.txt"):
        assert wanted in names, wanted
    assert "GNU GENERAL PUBLIC LICENSE" in (REPO / "COPYING").read_text()[:200]
    shipped_lab = sorted(n for n in names if n.startswith(("lab/", "tests/lab", "tests/integration", "tools/", ".lab", ".venv")))
    assert shipped_lab == []
    # files for AWX projects, image builds and docs builds are not collection content
    assert sorted(n for n in names if n.startswith(("collections/", "execution-environment.yml", ".build", "build/"))) == []
