# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection documents kubernetes.core's auth options itself (doc fragment fleetdr.kube.k8s_auth), so
ansible-doc renders every module with only this collection installed (Galaxy's importer, antsibull-docs);
the fragment stays equal to the argument spec the modules really take (kubernetes.core's AUTH_ARG_SPEC)."""

import os
import pathlib
import subprocess
import sys

import yaml

from ansible_collections.fleetdr.kube.plugins.doc_fragments.k8s_auth import ModuleDocFragment
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC

REPO = pathlib.Path(__file__).resolve().parents[3]
MODULES = REPO / "plugins" / "modules"


def test_fragment_documents_exactly_the_auth_argument_spec():
    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert set(options) == set(AUTH_ARG_SPEC)
    for name, spec in AUTH_ARG_SPEC.items():
        assert options[name].get("type", "str") == spec.get("type", "str"), name
        assert sorted(options[name].get("aliases") or []) == sorted(spec.get("aliases") or []), name
        if "choices" in spec:
            assert sorted(options[name]["choices"]) == sorted(spec["choices"]), name


def test_no_module_needs_another_collection_for_its_docs(tmp_path):
    root = tmp_path / "ansible_collections" / "fleetdr"
    root.mkdir(parents=True)
    os.symlink(REPO, root / "kube")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1")
    names = ["fleetdr.kube." + m.stem for m in sorted(MODULES.glob("*.py"))]
    run = subprocess.run(check=False, args=[str(pathlib.Path(sys.executable).with_name("ansible-doc")), "--json", "-t", "module"] + names,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "[WARNING]" not in run.stderr, run.stderr
