"""The fleet playbooks all end the same way: their fleet play gathers the clusters to fail into
group fleetdr_failed (playbooks/tasks/report.yml) and their last play fails those hosts
(playbooks/fail_clusters.yml). A playbook that gathered them without importing that play would
exit 0 with failed clusters."""
from pathlib import Path

import yaml

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def _tasks(play):
    return play.get("tasks") or []


def test_every_fleet_playbook_fails_the_clusters_its_fleet_play_gathered():
    fleet = []
    for path in sorted(PLAYBOOKS.glob("*.yml")):
        plays = yaml.safe_load(path.read_text())
        if not isinstance(plays, list):  # argument specs (*.meta.yml)
            continue
        if any(task.get("ansible.builtin.import_tasks") == "tasks/report.yml" for play in plays for task in _tasks(play)):
            fleet.append(path.stem)
            assert plays[-1].get("ansible.builtin.import_playbook") == "fail_clusters.yml", path.name
    assert fleet == ["backup", "drill", "install", "migrate", "restore", "schedule", "status", "storage", "storage_status",
                     "storage_teardown"]


def test_the_last_play_takes_exactly_the_gathered_group():
    gather = next(task for task in yaml.safe_load((PLAYBOOKS / "tasks" / "report.yml").read_text())
                  if "ansible.builtin.add_host" in task)
    assert gather["ansible.builtin.add_host"]["groups"] == "fleetdr_failed" and gather["run_once"] is True
    play, = yaml.safe_load((PLAYBOOKS / "fail_clusters.yml").read_text())
    assert play["hosts"] == "{{ groups['fleetdr_failed'] | default([]) }}"
    assert [next(key for key in task if key.startswith("ansible.builtin.")) for task in _tasks(play)] == ["ansible.builtin.fail"]
