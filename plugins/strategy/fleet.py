# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: fleet
short_description: The linear strategy, waiting for a task's results without polling every millisecond
version_added: "1.0.0"
description:
  - Runs a play exactly as C(ansible.builtin.linear) does (lockstep per host batch, C(serial), C(run_once), handlers, C(any_errors_fatal)).
  - While a task runs, C(ansible-playbook) checks for its results every C(internal_poll_interval) seconds, by default 0.001 s,
    which costs about 27 ms of controller CPU per second of the run. A fleet playbook is a handful of tasks, one of which runs
    for minutes against every cluster at once, so this strategy checks at most every 10 ms; a larger C(internal_poll_interval)
    set in C(ansible.cfg) is kept.
  - While the play runs, what C(ansible-playbook) holds when it starts (the inventory, the play, every host's variables) is
    frozen out of Python's cyclic garbage collector, which otherwise walks it again on each full collection (about 1 s of
    CPU in a 1,000-cluster run); this is also the state the workers are forked from.
  - "The fleet playbooks of this collection use it. Any play can, with C(strategy: fleetdr.kube.fleet)."
author:
  - fleetdr.kube maintainers (@fleetdr)
"""

import gc
import time

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategyModule

# Seconds between checks for a running task's results (Ansible's internal_poll_interval, if larger, wins).
POLL_INTERVAL = 0.01


class StrategyModule(LinearStrategyModule):

    def run(self, iterator, play_context):
        # gc.freeze before forking workers is what Python's gc documentation advises, too.
        gc.freeze()
        try:
            return super(StrategyModule, self).run(iterator, play_context)
        finally:
            gc.unfreeze()

    def _wait_on_pending_results(self, iterator):
        """ansible.builtin.linear's wait (StrategyBase._wait_on_pending_results), checking at most every POLL_INTERVAL."""
        interval = max(C.DEFAULT_INTERNAL_POLL_INTERVAL, POLL_INTERVAL)
        results = []
        while self._pending_results > 0 and not self._tqm._terminated:
            if self._tqm.has_dead_workers():
                raise AnsibleError("A worker was found in a dead state")
            results.extend(self._process_pending_results(iterator))
            if self._pending_results > 0:
                time.sleep(interval)
        return results
