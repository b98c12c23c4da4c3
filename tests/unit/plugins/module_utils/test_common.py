"""common.run turns every known error into one fail_json carrying its context."""
import pytest

pytest.importorskip("ansible")

from ansible_collections.fleetdr.kube.plugins.module_utils import common  # noqa: E402
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import (  # noqa: E402
    ApiError,
    ConflictError,
    NotFoundError,
    ValidationError,
    WaitTimeout,
)


class Exit(Exception):
    pass


class FakeModule(object):
    def __init__(self):
        self.failed = None
        self.exited = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise Exit()

    def exit_json(self, **kwargs):
        self.exited = kwargs
        raise Exit()


def outcome(exc=None, result=None):
    module = FakeModule()

    def action():
        if exc is not None:
            raise exc
        return result

    with pytest.raises(Exit):
        common.run_module(module, action, name="b1")
    return module


def test_success_exits_with_the_result():
    assert outcome(result={"changed": False, "result": {}}).exited == {"changed": False, "result": {}}


def test_validation_error_names_the_option_and_changes_nothing():
    failed = outcome(ValidationError("ttl", "bad")).failed
    assert failed == {"msg": "ttl: bad", "option": "ttl", "changed": False}


@pytest.mark.parametrize("exc,extra", [
    (ConflictError("differs", name="b1", differences={"ttl": {}}), {"name": "b1", "differences": {"ttl": {}}}),
    (WaitTimeout("timed out", last={"x": 1}, changed=True), {"changed": True}),
    (NotFoundError("backup_name: missing", option="backup_name"), {"option": "backup_name"}),
    (ApiError("Creating failed", status=422), {"status": 422}),
])
def test_known_errors_keep_their_context(exc, extra):
    failed = outcome(exc).failed
    assert failed["msg"] == exc.msg
    for key, value in extra.items():
        assert failed[key] == value


def test_unexpected_errors_carry_a_traceback():
    failed = outcome(KeyError("boom")).failed
    assert failed["msg"].startswith("KeyError") and "Traceback" in failed["exception"] and failed["name"] == "b1"
