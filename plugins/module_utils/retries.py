# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one retry policy: which failures are worth retrying, how long to back off, and the loop.

429, 5xx and connection-level failures are retried with exponential backoff and full jitter,
honouring Retry-After; anything else becomes an ApiError carrying the server's message at once.
The API client (client.py) and the waiter (waiter.py) both use it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import random
import time

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ApiError
from ansible_collections.fleetdr.kube.plugins.module_utils.transport import HttpStatusError

DEFAULT_RETRIES = 5


class Backoff(object):
    """Exponential backoff with full jitter, bounded by ``cap``."""

    def __init__(self, base=0.5, cap=8.0, rand=None):
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rand = rand or random.random

    def next_delay(self, hint=None):
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt += 1
        delay = ceiling * self._rand()
        if hint is not None:
            delay = max(delay, min(float(hint), self.cap))
        return delay

    def reset(self):
        self.attempt = 0


def is_transient(exc):
    """429, 5xx, and connection-level failures are worth retrying."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status == 429 or 500 <= status <= 599
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    # A TLS connection cut short; a certificate the server should not have is not transient.
    return type(exc).__name__ in ("SSLError", "SSLEOFError", "SSLZeroReturnError")


def retry_after(exc):
    headers = getattr(exc, "headers", None) or {}
    try:
        value = headers.get("retry-after", headers.get("Retry-After"))
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def api_error(exc, action):
    """Translate an HTTP error answer into our ApiError with the server's message."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    body = getattr(exc, "body", None)
    message = None
    if body:
        try:
            message = json.loads(body).get("message")
        except Exception:
            message = None
    text = "{0} failed: {1}".format(action, message or reason or str(exc))
    if status:
        text += " (HTTP {0})".format(status)
    return ApiError(text, status=status, reason=reason, body=message)


def with_retries(fn, action, retries=DEFAULT_RETRIES, sleep=time.sleep, backoff=None, deadline=None, clock=time.monotonic):
    """Call ``fn()``; retry transient failures (not past ``deadline``, a ``clock()`` value); raise ApiError otherwise."""
    backoff = backoff or Backoff()
    attempt = 0

    def again(hint=None):
        delay = backoff.next_delay(hint)
        if deadline is not None and clock() + delay >= deadline:
            return False
        sleep(delay)
        return True

    while True:
        try:
            return fn()
        except HttpStatusError as exc:
            if is_transient(exc) and attempt < retries:
                attempt += 1
                if again(retry_after(exc)):
                    continue
            raise api_error(exc, action)
        except Exception as exc:
            if is_transient(exc) and attempt < retries:
                attempt += 1
                if again():
                    continue
            if is_transient(exc):
                raise ApiError("{0} failed: {1}".format(action, exc))
            raise
