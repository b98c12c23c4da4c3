# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""execution-environment.yml gives ansible-builder a build context with this collection and kubernetes.core,
and the collection's meta/execution-environment.yml hands its Python and system requirements to introspection."""

import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
BUILDER = BIN / "ansible-builder"

pytestmark = pytest.mark.skipif(not BUILDER.exists(), reason="ansible-builder is not installed (requirements-dev.txt)")


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(out)],
                   check=True, capture_output=True)
    (built,) = out.glob("fleetdr-kube-*.tar.gz")
    return built


def test_ansible_builder_create_writes_a_context_with_the_collection_and_kubernetes_core(tmp_path, tarball):
    # the definition next to the tarball where `make ee-context` puts it
    shutil.copy(REPO / "execution-environment.yml", tmp_path / "execution-environment.yml")
    (tmp_path / ".build" / "ee").mkdir(parents=True)
    shutil.copy(tarball, tmp_path / ".build" / "ee" / "fleetdr-kube.tar.gz")
    context = tmp_path / "context"
    run = subprocess.run(check=False, args=[str(BUILDER), "create", "-f", "execution-environment.yml", "-c", str(context),
                                            "--output-filename", "Containerfile"], cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No matches" not in run.stdout + run.stderr  # the collection tarball was found and copied
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core==2.19.14 ansible-runner"' in containerfile
    assert "ansible-galaxy collection install" in containerfile and "introspect" in containerfile
    final_stage = containerfile.rsplit("\nFROM ", 1)[1]
    assert "internal_poll_interval = 0.01\\n' > /etc/ansible/ansible.cfg" in final_stage  # job runs poll every 10 ms
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())["collections"]
    names = dict((entry["name"], entry) for entry in requirements)
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert names["kubernetes.core"]["version"] == galaxy["dependencies"]["kubernetes.core"]
    assert names["collections/fleetdr-kube.tar.gz"]["type"] == "file"
    assert (context / "_build" / "collections" / "fleetdr-kube.tar.gz").read_bytes() == tarball.read_bytes()


def test_the_installed_collection_declares_its_python_and_system_requirements(tmp_path, tarball):
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--no-deps", "--force", "-p", str(tmp_path),
                    str(tarball)], check=True, capture_output=True)
    meta = yaml.safe_load((tmp_path / "ansible_collections" / "fleetdr" / "kube" / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}
    run = subprocess.run([str(BUILDER), "introspect", "--sanitize", str(tmp_path)], capture_output=True, text=True, timeout=120, check=True)
    found = yaml.safe_load(run.stdout)
    python = [line.split("#")[0].strip() for line in found["python"] if "fleetdr.kube" in line]
    assert "kubernetes>=24.2.0" in python and "boto3>=1.34" in python and "jsonschema>=4.0" in python
    system = [line.split("#")[0].strip() for line in found["system"] if "fleetdr.kube" in line]
    assert "libyaml-devel [compile platform:rpm]" in system
