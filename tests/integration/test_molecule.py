# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Molecule scenario extensions/molecule/fleet, run the way a developer runs it.

`molecule test -s fleet` (cwd extensions/): destroy -> syntax -> create (fleetdr-lab up, 2 clusters)
-> converge (role fleetdr.kube.velero on both) -> idempotence (second converge changes nothing)
-> verify (BSL Available, Deployment ready, backup/restore on c1, migrate c1 -> c2 through the
collection's playbooks) -> destroy (fleetdr-lab down). The test asserts that every step ran and
passed, that the idempotence run changed nothing, and that the lab is gone afterwards.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MOLECULE = BIN / "molecule"
SCENARIO = "fleet"
STEPS = ["destroy", "syntax", "create", "converge", "idempotence", "verify", "destroy"]


@pytest.fixture(scope="module")
def molecule_run(collections):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        # molecule calls ansible-config/ansible-playbook and the scenario calls fleetdr-lab: all in this venv.
        "PATH": os.pathsep.join([str(BIN), env.get("PATH", "")]),
        "NO_COLOR": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    })
    env.pop("FLEETDR_LAB_DIR", None)
    proc = subprocess.run(
        [str(MOLECULE), "test", "-s", SCENARIO],
        cwd=REPO / "extensions", env=env, text=True, timeout=900, check=False,
        # One pipe: molecule logs its steps on stderr, the playbooks print on stdout; keep their order.
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    output = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    return proc.returncode, output


# molecule logs "[fleet > converge] Executing" without a terminal, "fleet ➜ converge: Executing" with one.
_STEP_LINE = r"\[?" + SCENARIO + r" (?:>|➜) %s\]?:? %s"


def _step_outputs(output, step):
    """The text of each run of a step, from its 'Executing' line to its 'Executed' line."""
    return re.findall(_STEP_LINE % (step, "Executing") + r"(.*?)" + _STEP_LINE % (step, r"Executed: (\w+)"),
                      output, flags=re.S)


def _recap(text):
    hosts = {}
    for line in text.split("PLAY RECAP")[-1].splitlines():
        match = re.match(r"^[\s│]*(\S+)\s+:\s+(ok=.*)$", line)
        if match:
            hosts[match.group(1)] = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2)))
    return hosts


def test_scenario_passes_every_step(molecule_run):
    returncode, output = molecule_run
    assert returncode == 0, output[-10000:]
    ran = re.findall(r"INFO\s+" + _STEP_LINE % (r"(\w+)", r"Executed: (\w+)"), output)
    assert [entry[0] for entry in ran if entry[0] in STEPS] == STEPS, ran
    assert all(result == "Successful" for step, result in ran if step in STEPS), ran


def test_idempotence_step_ran_and_changed_nothing(molecule_run):
    returncode, output = molecule_run
    runs = _step_outputs(output, "idempotence")
    assert len(runs) == 1 and runs[0][1] == "Successful", output[-6000:]
    counts = _recap(runs[0][0])
    assert sorted(counts) == ["c1", "c2"]  # the role ran again on both lab clusters
    assert all(c["changed"] == 0 and c["failed"] == 0 and c["ok"] > 0 for c in counts.values()), counts


def test_converge_installed_on_both_clusters(molecule_run):
    returncode, output = molecule_run
    runs = _step_outputs(output, "converge")
    assert len(runs) == 1 and runs[0][1] == "Successful"
    counts = _recap(runs[0][0])
    assert sorted(counts) == ["c1", "c2"]
    assert all(c["changed"] > 0 and c["failed"] == 0 for c in counts.values()), counts


def test_verify_ran_backup_restore_and_migrate(molecule_run):
    returncode, output = molecule_run
    runs = _step_outputs(output, "verify")
    assert len(runs) == 1 and runs[0][1] == "Successful"
    text = runs[0][0]
    for play in ("Back up the fleet", "Restore the fleet", "Migrate from one cluster to the others",
                 "Verify | the restore brought the data back", "Verify | the namespace arrived on c2"):
        assert "PLAY [%s]" % play in text, play
    counts = _recap(text)
    assert counts["c1"]["failed"] == 0 and counts["c2"]["failed"] == 0


def test_destroy_stopped_the_lab(molecule_run):
    returncode, output = molecule_run
    # The first destroy runs before create wrote the lab inventory, and ansible-playbook names the file.
    lab_dirs = set(re.findall(r"Unable to parse\s+(\S+)/inventory\.yml", output))
    assert len(lab_dirs) == 1, lab_dirs
    lab_dir = Path(lab_dirs.pop())
    final_destroy = _step_outputs(output, "destroy")[-1][0]
    assert "TASK [Stop the lab]" in final_destroy and _recap(final_destroy)["localhost"]["changed"] >= 1
    assert not lab_dir.exists()
