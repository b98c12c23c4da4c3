import re

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_short_clean_name_is_kept_verbatim():
    assert names.make_name("nightly", "c1") == "nightly-c1"


def test_long_names_are_hashed_not_cut_and_stay_distinct():
    a = names.make_name("x" * 70, "cluster-a")
    b = names.make_name("x" * 70, "cluster-b")
    assert len(a) == 63 and len(b) == 63
    assert a != b
    assert DNS_LABEL.match(a) and DNS_LABEL.match(b)


def test_names_are_deterministic():
    assert names.make_name("Prod_Backup", "EU/West") == names.make_name("Prod_Backup", "EU/West")


def test_sanitised_names_carry_a_hash_so_distinct_inputs_do_not_collide():
    assert names.make_name("a_b") != names.make_name("a-b")
    assert DNS_LABEL.match(names.make_name("A_B"))


def test_max_length_is_respected():
    name = names.make_name("backup", "y" * 100, max_length=names.MAX_SCHEDULE_NAME)
    assert len(name) <= 48


def test_fleet_object_name_contains_cluster():
    assert names.fleet_object_name("nightly", "c2") == "nightly-c2"


def test_label_value_hashes_long_values():
    value = names.label_value("s" * 80)
    assert len(value) <= 63
    assert names.label_value("ok.value_1") == "ok.value_1"


def test_ownership_labels_are_valid_labels():
    labels = names.ownership_labels("backup", "Nightly Run " * 10, "c1")
    names.validate_labels(labels)
    assert labels[names.LABEL_OPERATION] == "backup"
    assert labels[names.LABEL_CLUSTER] == "c1"
    assert labels[names.LABEL_MANAGED_BY] == "fleetdr.kube"


@pytest.mark.parametrize("bad", ["Upper", "-lead", "trail-", "sp ace", "a" * 64, ""])
def test_validate_object_name_rejects(bad):
    with pytest.raises(ValidationError) as err:
        names.validate_object_name(bad)
    assert err.value.option == "name"


def test_validate_object_name_mentions_length_limit():
    with pytest.raises(ValidationError) as err:
        names.validate_object_name("a" * 49, max_length=names.MAX_SCHEDULE_NAME)
    assert "48" in err.value.msg


@pytest.mark.parametrize("labels", [{"bad key!": "v"}, {"k": "bad value!"}, {"-x/y": "v"}, {"k": "v" * 64}])
def test_validate_labels_rejects(labels):
    with pytest.raises(ValidationError):
        names.validate_labels(labels)
