# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet strategy is linear, waiting for results with checks 10 ms apart (or Ansible's interval, if larger)."""

import types

import pytest
from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategyModule

from ansible_collections.fleetdr.kube.plugins.strategy import fleet


def waiting_strategy(arrivals, dead=False):
    """A strategy with one pending result that arrives on the check numbered ``arrivals``."""
    strategy = object.__new__(fleet.StrategyModule)
    strategy._pending_results = 1
    strategy._tqm = types.SimpleNamespace(_terminated=False, has_dead_workers=lambda: dead)
    checks = []

    def process(iterator):
        checks.append(iterator)
        if len(checks) == arrivals:
            strategy._pending_results = 0
            return ["the result"]
        return []
    strategy._process_pending_results = process
    return strategy, checks


@pytest.mark.parametrize("configured,expected", [(0.001, 0.01), (0.05, 0.05)])
def test_results_are_checked_every_10_ms_unless_ansible_is_set_to_wait_longer(monkeypatch, configured, expected):
    slept = []
    monkeypatch.setattr(fleet.time, "sleep", slept.append)
    monkeypatch.setattr(C, "DEFAULT_INTERNAL_POLL_INTERVAL", configured)
    strategy, checks = waiting_strategy(arrivals=4)
    assert strategy._wait_on_pending_results("it") == ["the result"]
    assert checks == ["it"] * 4 and slept == [expected] * 3
    assert isinstance(strategy, LinearStrategyModule)


def test_a_dead_worker_ends_the_wait_as_in_ansible(monkeypatch):
    monkeypatch.setattr(fleet.time, "sleep", lambda seconds: None)
    strategy, _checks = waiting_strategy(arrivals=99, dead=True)
    with pytest.raises(AnsibleError, match="dead state"):
        strategy._wait_on_pending_results("it")


def test_the_play_runs_with_what_ansible_held_frozen_out_of_the_collector(monkeypatch):
    import gc

    frozen = []
    monkeypatch.setattr(LinearStrategyModule, "run", lambda self, iterator, play_context: frozen.append(gc.get_freeze_count()) or 0)
    gc.unfreeze()
    assert object.__new__(fleet.StrategyModule).run("iterator", "play context") == 0
    assert frozen[0] > 1000 and gc.get_freeze_count() == 0
