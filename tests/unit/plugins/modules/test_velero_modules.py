"""Module-level pieces that need no cluster: argument specs, location spec building, names."""
import pytest

pytest.importorskip("ansible")
pytest.importorskip("ansible_collections.kubernetes.core")

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError  # noqa: E402
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.argspec import BACKUP_SPEC_ARG_SPEC  # noqa: E402
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.spec import BACKUP_SPEC_OPTIONS  # noqa: E402
from ansible_collections.fleetdr.kube.plugins.modules import (  # noqa: E402
    velero_backup,
    velero_location,
    velero_restore,
    velero_schedule,
)


def test_backup_and_schedule_share_one_template_argspec():
    backup, schedule = velero_backup.argspec(), velero_schedule.argspec()
    for option, spec in BACKUP_SPEC_ARG_SPEC.items():
        assert backup[option] == spec == schedule[option]
    assert set(BACKUP_SPEC_OPTIONS) == set(BACKUP_SPEC_ARG_SPEC)


def test_auth_options_come_from_kubernetes_core():
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC

    for module in (velero_backup, velero_schedule, velero_restore, velero_location):
        spec = module.argspec()
        for option in AUTH_ARG_SPEC:
            assert spec[option] == AUTH_ARG_SPEC[option]
        assert spec["velero_namespace"]["default"] == "velero"


def test_credentials_are_no_log():
    spec = velero_location.argspec()
    for option in ("credentials_file", "access_key_id", "secret_access_key"):
        assert spec[option]["no_log"] is True


def location_params(**overrides):
    params = dict((k, None) for k in velero_location.argspec())
    params.update(type="backup", provider="aws", bucket="fleetdr")
    params.update(overrides)
    return params


def test_location_spec():
    spec = velero_location.build_spec(location_params(prefix="/prod/", config={"s3ForcePathStyle": True, "region": "eu"},
                                                      access_mode="ReadOnly", default=True, validation_frequency="90s"))
    assert spec == {"provider": "aws", "objectStorage": {"bucket": "fleetdr", "prefix": "prod"},
                    "config": {"s3ForcePathStyle": "true", "region": "eu"}, "accessMode": "ReadOnly", "default": True,
                    "validationFrequency": "1m30s"}


@pytest.mark.parametrize("overrides,option", [
    ({"bucket": "fleetdr/prod"}, "bucket"),
    ({"bucket": "-x"}, "bucket"),
    ({"bucket": None}, "bucket"),
    ({"type": "snapshot", "bucket": "b"}, "bucket"),
    ({"backup_sync_period": "daily"}, "backup_sync_period"),
])
def test_location_spec_rejects(overrides, option):
    with pytest.raises(ValidationError) as err:
        velero_location.build_spec(location_params(**overrides))
    assert err.value.option == option


def test_credentials_file_built_from_keys():
    content = velero_location.credentials_content(location_params(access_key_id="AK", secret_access_key="SK"))
    assert content == "[default]\naws_access_key_id=AK\naws_secret_access_key=SK\n"
    with pytest.raises(ValidationError):
        velero_location.credentials_content(location_params(access_key_id="AK"))
