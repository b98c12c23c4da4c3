"""Schedules driven by the lab clock: `fleetdr-lab clock advance` instead of waiting.

Tests that move the clock use a private Velero in the scratch lab, so the shared lab's clock
stays put.

Absence checks use a witness: a `@every 1m` schedule whose name sorts after the subject's. The
schedule controller re-checks every schedule (in name order, one worker) after each clock
advance, so once the witness has fired for an advance the subject was evaluated for it too.

Upstream source: Velero pkg/controller/schedule_controller.go,
pkg/apis/velero/v1/schedule_types.go.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from helpers import Apis, unique, wait_for

NAME_RE = re.compile(r"^(?P<schedule>.+)-(?P<stamp>\d{14})$")


def create_schedule(velero, name, cron, template=None, **spec):
    body = {"kind": "Schedule", "metadata": {"name": name},
            "spec": {"schedule": cron, "template": template or {}, **spec}}
    return velero.create("schedules", body)


def schedule_backups(velero, name):
    return velero.list("backups", label_selector=f"velero.io/schedule-name={name}")


def wait_phase(velero, name, phase):
    return wait_for(lambda: (lambda s: s if (s.get("status") or {}).get("phase") == phase else None)(
        velero.get("schedules", name)), what=f"schedule {name} {phase}")


def advance(lab, duration):
    lab.cli("clock", "advance", duration)


@pytest.fixture
def schedules(velero):
    """Names of schedules to delete at the end (so later clock advances don't fire them)."""
    made = []
    yield made
    for name in made:
        velero.delete("schedules", name)


@pytest.fixture
def moving(private_velero, scratch_lab):
    """(velero, lab, empty namespace) where the clock may be advanced."""
    ns = unique("sched-ns")
    Apis(private_velero.api_client).namespace(ns)
    return private_velero, scratch_lab, ns


@pytest.fixture
def empty_ns(velero):
    ns = unique("sched-ns")
    Apis(velero.api_client).namespace(ns)
    return ns


def witness(velero, schedules, empty_ns, subject):
    name = f"{subject}-zz-witness"   # sorts after the subject
    create_schedule(velero, name, "@every 1m", {"includedNamespaces": [empty_ns]})
    schedules.append(name)
    wait_phase(velero, name, "Enabled")
    return name


def witness_fired(velero, name, count, finish=True):
    """Wait for the witness's `count`-th backup (and for it to finish, so it never blocks a tick;
    not possible while another backup holds the one-at-a-time queue)."""
    backups = wait_for(lambda: (lambda b: b if len(b) >= count else None)(schedule_backups(velero, name)),
                   what=f"witness backup #{count}")
    if finish:
        for b in backups:
            velero.wait_backup(b["metadata"]["name"])


@pytest.mark.parametrize("cron,message", [
    ("not a cron", "invalid schedule: expected exactly 5 fields, found 3: [not a cron]"),
    ("61 * * * *", "invalid schedule: end of range (61) above maximum (59): 61"),
    ("@fortnightly", "invalid schedule: unrecognized descriptor: @fortnightly"),
    ("", "Schedule must be a non-empty valid Cron expression"),
])
def test_invalid_cron_fails_validation(velero, schedules, cron, message):
    name = unique("bad")
    create_schedule(velero, name, cron)
    schedules.append(name)
    s = wait_phase(velero, name, "FailedValidation")
    assert s["status"]["validationErrors"] == [message]


def test_schedule_fires_at_first_tick_on_the_lab_clock(moving):
    velero, lab, empty_ns = moving
    name = unique("nightly")
    template = {"includedNamespaces": [empty_ns], "ttl": "24h0m0s", "metadata": {"labels": {"tier": "gold"}}}
    created = create_schedule(velero, name, "@every 10m", template, useOwnerReferencesInBackup=True)
    s = wait_phase(velero, name, "Enabled")
    assert s["spec"]["skipImmediately"] is False          # written out on the first reconcile
    assert "lastBackup" not in s["status"]
    assert schedule_backups(velero, name) == []            # not immediately at creation

    advance(lab, "11m")
    backups = wait_for(lambda: schedule_backups(velero, name), what="scheduled backup")
    assert len(backups) == 1
    b = backups[0]
    m = NAME_RE.match(b["metadata"]["name"])
    assert m and m.group("schedule") == name
    # template labels + the schedule label (the backup controller adds storage-location later)
    labels = {k: v for k, v in b["metadata"]["labels"].items() if k != "velero.io/storage-location"}
    assert labels == {"tier": "gold", "velero.io/schedule-name": name}
    ref = b["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == \
        ("Schedule", name, created["metadata"]["uid"], True)
    assert b["spec"]["includedNamespaces"] == [empty_ns] and b["spec"]["ttl"] == "24h0m0s"
    s = velero.get("schedules", name)
    last = datetime.strptime(s["status"]["lastBackup"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert m.group("stamp") == last.strftime("%Y%m%d%H%M%S")   # named after the creation time
    stamp = datetime.strptime(m.group("stamp"), "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    made = datetime.strptime(created["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=timezone.utc)
    assert (stamp - made).total_seconds() >= 600                 # first tick after creation
    assert velero.wait_backup(b["metadata"]["name"])["status"]["phase"] == "Completed"


def test_paused_schedule_is_not_reconciled(moving):
    velero, lab, empty_ns = moving
    schedules = []
    name = unique("paused")
    create_schedule(velero, name, "@every 1m", {"includedNamespaces": [empty_ns]}, paused=True)
    schedules.append(name)
    w = witness(velero, schedules, empty_ns, name)
    advance(lab, "2m")
    witness_fired(velero, w, 1)
    s = velero.get("schedules", name)
    assert not s.get("status")            # never touched: no phase either
    assert schedule_backups(velero, name) == []
    # unpausing makes it a normal schedule
    velero.patch("schedules", name, {"spec": {"paused": False}})
    wait_phase(velero, name, "Enabled")
    advance(lab, "2m")
    wait_for(lambda: schedule_backups(velero, name), what="backup after unpause")


def test_tick_is_skipped_while_a_backup_of_the_schedule_is_in_progress(moving):
    velero, lab, empty_ns = moving
    schedules = []
    name = unique("busy")
    create_schedule(velero, name, "@every 10m", {"includedNamespaces": [empty_ns]})
    schedules.append(name)
    wait_phase(velero, name, "Enabled")
    w = witness(velero, schedules, empty_ns, name)
    # a backup of this schedule still running (created with its status, as Velero CRs allow)
    running = f"{name}-running"
    velero.create("backups", {"kind": "Backup", "metadata": {
        "name": running, "labels": {"velero.io/schedule-name": name}},
        "spec": {"includedNamespaces": [empty_ns]}, "status": {"phase": "InProgress"}})
    advance(lab, "11m")
    # the witness's backup stays Queued behind the running one (one backup at a time), which does
    # not block its schedule; the running backup does block the subject's
    witness_fired(velero, w, 1, finish=False)
    assert [b["metadata"]["name"] for b in schedule_backups(velero, name)] == [running]
    assert "lastBackup" not in (velero.get("schedules", name).get("status") or {})

    velero.patch("backups", running, {"status": {"phase": "Completed"}})
    advance(lab, "11m")
    backups = wait_for(lambda: [b for b in schedule_backups(velero, name) if b["metadata"]["name"] != running],
                   what="backup once the previous one finished")
    assert len(backups) == 1


def test_skip_immediately_records_last_skipped(velero, schedules, empty_ns):
    name = unique("skip")
    create_schedule(velero, name, "@every 10m", {"includedNamespaces": [empty_ns]}, skipImmediately=True)
    schedules.append(name)
    s = wait_phase(velero, name, "Enabled")
    assert s["spec"]["skipImmediately"] is False
    assert s["status"]["lastSkipped"]
