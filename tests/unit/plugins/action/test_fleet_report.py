# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet_report runs inside a real ansible-playbook (controller side, no cluster needed)."""

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[4]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")

pytestmark = pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="ansible-playbook not installed next to python")


@pytest.fixture
def run_playbook(tmp_path):
    collections = tmp_path / "collections" / "ansible_collections" / "fleetdr"
    collections.mkdir(parents=True)
    (collections / "kube").symlink_to(REPO)

    def run(playbook, extra_env=None):
        path = tmp_path / "play.yml"
        path.write_text(textwrap.dedent(playbook))
        env = dict(os.environ)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"),
            "ANSIBLE_SHOW_CUSTOM_STATS": "true",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        })
        env.update(extra_env or {})
        return subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable, str(path)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
        )

    return run


PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the report
      fleetdr.kube.fleet_report:
        operation: backup
        name: nightly
        options: {included_namespaces: [shop], s3_secret_access_key: "{{ key }}"}
        clusters:
          - {name: c1, labels: {env: prod}, verdict: succeeded, phase: Completed,
             started: "2026-11-22T12:00:00Z", finished: "2026-11-22T12:00:10Z",
             timeline: [{phase: InProgress, at: "2026-11-22T12:00:01Z"}]}
          - {name: c2, verdict: failed, phase: Failed, reason: "403 using key {{ key }}",
             started: "2026-11-22T12:00:00Z", finished: "2026-11-22T12:01:00Z"}
        dest: "__DEST__"
        fail_on: __FAIL_ON__
        secrets: ["{{ key }}"]
      register: written
      vars:
        key: TOPSECRETVALUE42

    - name: Show what came back
      ansible.builtin.copy:
        content: "{{ written | to_json }}"
        dest: "__DEST__/result.json"
        mode: "0644"

    - name: Fail the run when the report says so
      ansible.builtin.fail:
        msg: "{{ written.msg }}"
      when: written.fail
"""


def play(dest, fail_on):
    return PLAY.replace("__DEST__", str(dest)).replace("__FAIL_ON__", fail_on)


def test_writes_files_returns_table_and_publishes_stats(run_playbook, tmp_path):
    dest = tmp_path / "report"
    proc = run_playbook(play(dest, "any"))
    # fail_on=any and one failed cluster: the follow-up task fails the run, after the report is out
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "backup nightly: partially_failed (1 succeeded, 0 partially failed, 1 failed" in proc.stdout
    # the report task itself succeeded; the run failed in the follow-up task
    assert re.search(r"TASK \[Fail the run when the report says so\][^\n]*\n(.*\n)*?fatal: \[localhost\]", proc.stdout)
    assert sorted(p.name for p in dest.iterdir()) == ["junit.xml", "report.html", "report.json", "report.md", "result.json"]
    report = json.loads((dest / "report.json").read_text())
    assert report["schema"] == "fleetdr.kube/report/v1"
    assert report["totals"]["failed"] == 1 and report["verdict"] == "partially_failed"
    assert report["options"] == {"included_namespaces": ["shop"]}
    # the secret is gone from every file and from the task output
    for path in dest.iterdir():
        assert "TOPSECRETVALUE42" not in path.read_text(), path.name
    assert "TOPSECRETVALUE42" not in proc.stdout
    result = json.loads((dest / "result.json").read_text())
    assert result["fail"] is True and result["failed_clusters"] == ["c2"]
    assert result["changed"] is True
    assert result["table"].splitlines()[1].split()[0] == "CLUSTER"
    assert result["paths"]["html"] == str(dest / "report.html")
    # the table is printed, and the summary reaches the custom stats (AWX artifacts)
    assert "c2       failed" in proc.stdout
    assert "CUSTOM STATS" in proc.stdout and "fleetdr_report" in proc.stdout


def test_bad_input_fails_the_task(run_playbook, tmp_path):
    proc = run_playbook("""
    - hosts: localhost
      gather_facts: false
      tasks:
        - fleetdr.kube.fleet_report:
            operation: backup
            clusters: [{name: c1, verdict: great}]
    """)
    assert proc.returncode == 2
    assert "Failed to build or write the fleet report" in proc.stdout
    assert "verdict 'great'" in proc.stdout
