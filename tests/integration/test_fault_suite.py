# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fault and bad-input suite (fault_suite.py) on a private 3-cluster lab with Velero everywhere, one round
of each; `make reliability` runs the same scenarios on 5 clusters, ten rounds, and prints the figures.

Elsewhere: 20% 503/429 and the hung API server in test_playbook_fleet.py, a down cluster and a
cluster without Velero in test_playbook_fleet.py, second runs in the install/schedule/storage tests.
"""

import concurrent.futures
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from helpers import VeleroInstall  # noqa: E402
from labctl import LabHandle  # noqa: E402
from fleet_helpers import PlaybookRunner  # noqa: E402
import fault_suite  # noqa: E402


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("fault-lab"), clusters=3)
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda c: VeleroInstall(handle, c, prefix=c, version="v1.18.1").install(wait=True), handle.clusters))
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def play(lab, collections, tmp_path_factory):
    return PlaybookRunner(lab, collections, tmp_path_factory.mktemp("fault-work"))


def test_every_bad_input_is_refused_before_any_write_naming_the_option(lab, play):
    rows = [fault_suite.try_bad_input(lab, play, case) for case in fault_suite.BAD_INPUTS]
    assert len(rows) >= 40
    wrong = [row for row in rows if not (row["refused"] and row["before_any_write"] and row["names_option"])]
    assert not wrong, "\n".join(str(row) for row in wrong)


@pytest.mark.parametrize("scenario", ["velero_at_zero", "location_unavailable", "cluster_down"])
def test_one_broken_cluster_fails_alone_naming_why(lab, play, scenario):
    row = getattr(fault_suite, scenario)(lab, play)
    assert row["healthy_completed"] and row["broken_failed"] and row["reason_named"], str(row)
    assert row["duplicates"] == 0, row


def test_a_cluster_behind_another_ca_fails_alone(lab, play, tmp_path):
    row = fault_suite.wrong_ca(lab, play, tmp_path)
    assert row["healthy_completed"] and row["broken_failed"] and row["reason_named"], str(row)


def test_300ms_latency_on_every_cluster_slows_backups_but_all_complete(lab, play):
    row = fault_suite.latency(lab, play)
    assert row["completed"] == row["attempted"] == len(lab.clusters) and row["duplicates"] == 0, row


def test_a_migration_under_20_percent_429s_completes_everywhere_once(lab, play):
    row = fault_suite.migrate_rounds(lab, play, ["errors", "0.2", "429"], 1, "r429")
    assert row["completed"] == row["attempted"] == len(lab.clusters) and row["duplicates"] == 0, str(row)


def test_no_secret_in_anything_the_suite_printed_or_wrote(lab, play):
    figures = fault_suite.secret_occurrences(lab, play)
    assert figures["texts_scanned"] > 10 and figures["secret_occurrences"] == 0, figures
