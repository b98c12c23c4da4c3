# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make docs` works: antsibull-docs lints every plugin's and role's documentation (markup, references) and
renders the collection's docs, a page per module and role."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
ANTSIBULL_DOCS = BIN / "antsibull-docs"

pytestmark = pytest.mark.skipif(not ANTSIBULL_DOCS.exists(), reason="antsibull-docs is not installed (requirements-dev.txt)")


def test_docs_lint_clean_and_render_a_page_per_module_and_role(tmp_path):
    collections = tmp_path / "collections"
    subprocess.run([sys.executable, str(REPO / "tools" / "collections_tree.py"), str(collections)], check=True)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
               PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""))
    lint = subprocess.run(check=False, args=[str(ANTSIBULL_DOCS), "lint-collection-docs", "--plugin-docs", "."], env=env, capture_output=True, text=True,
                          cwd=str(collections / "ansible_collections" / "fleetdr" / "kube"), timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dest = tmp_path / "docs"
    dest.mkdir(mode=0o755)
    render = subprocess.run(check=False, args=[str(ANTSIBULL_DOCS), "collection", "--use-current", "--fail-on-error", "--dest-dir", str(dest), "fleetdr.kube"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert render.returncode == 0, render.stdout + render.stderr
    pages = dest / "collections" / "fleetdr" / "kube"
    for module in (REPO / "plugins" / "modules").glob("*.py"):
        page = pages / (module.stem + "_module.rst")
        assert page.exists(), page.name
        assert "ERROR while parsing" not in page.read_text(), page.name
    for role in (REPO / "roles").iterdir():
        assert (pages / (role.name + "_role.rst")).exists(), role.name
    # the auth options come from the collection's own fragment, rendered on every Kubernetes module
    assert "kubeconfig" in (pages / "rook_pool_module.rst").read_text()
