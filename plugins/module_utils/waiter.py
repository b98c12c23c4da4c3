# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Wait for a condition on one object by watching it, not by sleep-polling.

The waiter reads the object once (a list call, which also yields a
resourceVersion), then follows a watch from that resourceVersion. When the
stream ends (server timeout, dropped connection) it resumes from the last
resourceVersion it saw; when that version has expired (410 Gone) it reads the
object again. Transient API errors are retried with the policy in retries.py.
The whole wait is bounded by one deadline.

``source`` is the seam: anything with ``get()`` -> (object or None,
resourceVersion) and ``stream(resource_version, timeout_seconds)`` -> iterable
of ``(event_type, object)``. ``client.PathWatchSource`` is the real one;
tests use fakes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.retries import Backoff, is_transient, retry_after


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410); re-read the object."""


class Waiter(object):
    """Runs one wait; ``clock`` and ``sleep`` are injectable for tests."""

    def __init__(self, source, predicate, timeout, description="object", clock=time.monotonic, sleep=time.sleep, backoff=None, on_event=None,
                 initial=None):
        self.source = source
        # The object as a write just returned it: the watch starts from its resourceVersion, no list first.
        self.initial = initial
        self.predicate = predicate
        self.timeout = timeout
        self.description = description
        self.clock = clock
        self.sleep = sleep
        self.backoff = backoff or Backoff()
        self.on_event = on_event
        self.reconnects = 0
        self.retries = 0
        self.last = None

    def _remaining(self, deadline):
        return deadline - self.clock()

    def _pause(self, deadline, exc):
        remaining = self._remaining(deadline)
        if remaining <= 0:
            return False
        self.retries += 1
        self.sleep(min(self.backoff.next_delay(retry_after(exc)), remaining))
        return True

    def _timeout(self):
        return WaitTimeout(
            "Timed out after {0}s waiting for {1}".format(self.timeout, self.description),
            last=self.last,
        )

    def wait(self):
        deadline = self.clock() + self.timeout
        resource_version = _rv(self.initial)
        if resource_version is not None:
            self.last = self.initial
            if self.predicate(self.last):
                return self.last
        while True:
            if resource_version is None:
                try:
                    self.last, resource_version = self.source.get()
                except Exception as exc:
                    if is_transient(exc) and self._pause(deadline, exc):
                        continue
                    if is_transient(exc):
                        raise self._timeout()
                    raise
                self.backoff.reset()
                if self.predicate(self.last):
                    return self.last
            remaining = self._remaining(deadline)
            if remaining <= 0:
                raise self._timeout()
            got_event = False
            try:
                for event_type, obj in self.source.stream(resource_version, max(1, int(remaining + 0.999))):
                    got_event = True
                    if event_type == "BOOKMARK":
                        resource_version = _rv(obj) or resource_version
                        continue
                    resource_version = _rv(obj) or resource_version
                    self.last = None if event_type == "DELETED" else obj
                    if self.on_event:
                        self.on_event(event_type, obj)
                    self.backoff.reset()
                    if self.predicate(self.last):
                        return self.last
                    if self._remaining(deadline) <= 0:
                        raise self._timeout()
            except Gone:
                resource_version = None
                continue
            except WaitTimeout:
                raise
            except Exception as exc:
                if getattr(exc, "status", None) == 410:
                    resource_version = None
                    continue
                if not is_transient(exc):
                    raise
                if not self._pause(deadline, exc):
                    raise self._timeout()
                self.reconnects += 1
                continue
            # The stream ended normally (server-side timeout or a closed connection):
            # resume from the last resourceVersion. A stream that ends at once without
            # events is a sick server: back off instead of spinning.
            self.reconnects += 1
            if self._remaining(deadline) <= 0:
                raise self._timeout()
            if not got_event and not self._pause(deadline, None):
                raise self._timeout()


def _rv(obj):
    if isinstance(obj, dict):
        return (obj.get("metadata") or {}).get("resourceVersion")
    return None


def wait_for(source, predicate, timeout, description="object", **kwargs):
    return Waiter(source, predicate, timeout, description=description, **kwargs).wait()
