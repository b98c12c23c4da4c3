"""module_utils.retries: which failures are retried, the backoff, and ApiError with the server's message."""
import json

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils import retries
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ApiError
from ansible_collections.fleetdr.kube.plugins.module_utils.transport import HttpStatusError


class Flaky(object):
    def __init__(self, failures, result="ok"):
        self.failures = list(failures)
        self.calls = 0
        self.result = result

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


class ApiErr(Exception):
    def __init__(self, status, headers=None):
        super(ApiErr, self).__init__("HTTP %s" % status)
        self.status = status
        self.headers = headers or {}


def api_exception(status, message="boom", headers=None):
    return HttpStatusError(status, "Reason%d" % status, json.dumps({"kind": "Status", "message": message}), headers)


def test_transient_failures_are_retried_then_succeed():
    sleeps = []
    fn = Flaky([api_exception(503), api_exception(429, headers={"Retry-After": "2"}), ConnectionResetError("reset")])
    assert retries.with_retries(fn, "Reading x", sleep=sleeps.append) == "ok"
    assert fn.calls == 4 and len(sleeps) == 3
    assert sleeps[1] >= 2  # Retry-After is honoured


def test_retries_are_bounded():
    fn = Flaky([api_exception(500)] * 10)
    with pytest.raises(ApiError) as err:
        retries.with_retries(fn, "Creating backups b1", retries=2, sleep=lambda s: None)
    assert fn.calls == 3
    assert err.value.status == 500 and "Creating backups b1 failed: boom (HTTP 500)" == err.value.msg


def test_no_retry_sleeps_past_the_deadline():
    now = [100.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    fn = Flaky([api_exception(503, headers={"Retry-After": "3"})] * 10)
    with pytest.raises(ApiError) as err:
        retries.with_retries(fn, "Reading Deployment velero/velero", sleep=sleep, deadline=107.0, clock=lambda: now[0])
    assert now[0] < 107.0 and fn.calls == len(sleeps) + 1 and err.value.status == 503


def test_client_errors_are_not_retried_and_keep_the_server_message():
    fn = Flaky([api_exception(422, "spec.ttl: Invalid value")])
    with pytest.raises(ApiError) as err:
        retries.with_retries(fn, "Creating backups b1", sleep=lambda s: None)
    assert fn.calls == 1 and err.value.status == 422 and "spec.ttl: Invalid value" in err.value.msg


def test_other_exceptions_propagate_unchanged():
    fn = Flaky([KeyError("x")])
    with pytest.raises(KeyError):
        retries.with_retries(fn, "x", sleep=lambda s: None)


@pytest.mark.parametrize("exc,expected", [(ApiErr(429), True), (ApiErr(503), True), (ApiErr(404), False), (ApiErr(409), False),
                                          (ConnectionResetError(), True), (ValueError(), False)])
def test_is_transient(exc, expected):
    assert retries.is_transient(exc) is expected
