# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""extensions/awx/: data the awx.awx modules take as it is, playbooks and survey variables that exist,
files that include_vars loads from any directory, and apply.yml that passes every key on."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO = pathlib.Path(__file__).resolve().parents[3]
AWX = REPO / "extensions" / "awx"
BIN = pathlib.Path(sys.executable).parent
DATA = {  # file -> (variable, awx.awx module that takes its items)
    "credential_types.yml": ("controller_credential_types", "credential_type"),
    "credentials.yml": ("controller_credentials", "credential"),
    "projects.yml": ("controller_projects", "project"),
    "job_templates.yml": ("controller_templates", "job_template"),
    "workflows.yml": ("controller_workflows", "workflow_job_template"),
    "schedules.yml": ("controller_schedules", "schedule"),
}
EXTRA = {"controller_inventories": "inventory"}  # second list of projects.yml
# AWX's survey question types -> the argument spec types an answer of that type can satisfy
SURVEY_TYPES = {"text": {"str", "list", "path", "raw", "bool", "int"}, "textarea": {"str", "list", "raw"},
                "password": {"str"}, "integer": {"int", "str"}, "float": {"float", "str"},
                "multiplechoice": {"str", "bool", "list"}, "multiselect": {"list"}}


class _Loader(yaml.SafeLoader):
    """Ansible's own tag: !unsafe strings are left as they are (AWX templates them, not Ansible)."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load(name):
    return yaml.load((AWX / name).read_text(), Loader=_Loader)


def all_items():
    for name, (var, module) in DATA.items():
        doc = load(name)
        for item in doc[var]:
            yield module, item
        if name == "projects.yml":
            for item in doc["controller_inventories"]:
                yield "inventory", item


@pytest.fixture(scope="module")
def module_docs():
    """The awx.awx modules' options as ansible-doc reports them (one call for all)."""
    modules = sorted(set(module for _var, module in DATA.values()) | set(EXTRA.values()))
    out = subprocess.run([str(BIN / "ansible-doc"), "-j"] + ["awx.awx." + m for m in modules],
                         check=True, capture_output=True, text=True, env=dict(os.environ, ANSIBLE_NOCOLOR="1")).stdout
    docs = json.loads(out)
    return dict((name.split(".")[-1], docs[name]["doc"]["options"]) for name in docs)


def argspec(options):
    """An argument spec from documented options (types, choices, required, sub-options)."""
    spec = {}
    for name, doc in options.items():
        entry = dict((k, doc[k]) for k in ("type", "elements", "choices", "required", "aliases") if k in doc)
        if "suboptions" in doc:
            entry["options"] = argspec(doc["suboptions"])
        spec[name] = entry
    return spec


def playbook_options(playbook):
    meta = REPO / playbook.replace(".yml", ".meta.yml")
    assert meta.exists(), "{0} has no argument spec ({1})".format(playbook, meta.name)
    return yaml.safe_load(meta.read_text())["argument_specs"]["main"]["options"]


def test_every_item_is_accepted_by_its_awx_module_as_it_is(module_docs):
    checked = 0
    for module, item in all_items():
        unknown = set(item) - set(module_docs[module])
        assert not unknown, "{0} {1!r}: not options of awx.awx.{0}: {2}".format(module, item["name"], sorted(unknown))
        result = ArgumentSpecValidator(argspec(module_docs[module])).validate(dict(item))
        assert not result.error_messages, (module, item["name"], result.error_messages)
        checked += 1
    assert checked >= 13


def test_apply_playbook_uses_real_module_arguments_and_passes_on_every_data_key(module_docs):
    plays = yaml.safe_load((AWX / "apply.yml").read_text())
    tasks = [task for play in plays for task in play["tasks"]]
    passed = {}
    for task in tasks:
        for key, args in task.items():
            if key.startswith("awx.awx."):
                module = key.split(".")[-1]
                unknown = set(args) - set(module_docs[module])
                assert not unknown, "apply.yml {0}: {1}".format(key, sorted(unknown))
                passed[module] = set(args)
    for module, item in all_items():
        assert set(item) <= passed[module], "apply.yml drops {0} of awx.awx.{1}".format(sorted(set(item) - passed[module]), module)
    loaded = next(t for t in tasks if "ansible.builtin.include_vars" in t)
    assert set(plays[0]["vars"]["fleetdr_awx_files"]) == set(name[:-4] for name in DATA)
    assert loaded["loop"] == "{{ fleetdr_awx_files }}"


def test_playbooks_exist_and_survey_and_extra_variables_are_their_options():
    for template in load("job_templates.yml")["controller_templates"]:
        playbook = template["playbook"]
        assert (REPO / playbook).is_file(), playbook
        options = playbook_options(playbook)
        for var in template.get("extra_vars") or {}:
            assert var in options, "{0}: extra var {1} is not an option of {2}".format(template["name"], var, playbook)
        if not template.get("survey_enabled"):
            continue
        spec = template["survey_spec"]
        assert spec["name"] and "description" in spec
        for question in spec["spec"]:
            var = question["variable"]
            assert var in options, "{0}: survey variable {1} is not an option of {2}".format(template["name"], var, playbook)
            option = options[var]
            assert option.get("type", "str") in SURVEY_TYPES[question["type"]], (template["name"], var)
            if option.get("required"):
                assert question["required"], "{0}: {1} is required by {2}".format(template["name"], var, playbook)
            for choice in question.get("choices") or []:
                if option.get("type") == "bool":
                    assert choice in ("true", "false"), (var, choice)
                elif option.get("choices"):
                    assert choice in option["choices"], (var, choice)
        for var in options:
            if options[var].get("required") and var not in (template.get("extra_vars") or {}):
                assert var in [q["variable"] for q in spec["spec"]], "{0}: nothing sets required {1}".format(template["name"], var)


def test_workflow_schedules_and_credentials_name_objects_that_are_defined():
    templates = set(t["name"] for t in load("job_templates.yml")["controller_templates"])
    workflows = load("workflows.yml")["controller_workflows"]
    for workflow in workflows:
        ids = [node["identifier"] for node in workflow["workflow_nodes"]]
        assert len(ids) == len(set(ids))
        for node in workflow["workflow_nodes"]:
            assert node["unified_job_template"]["name"] in templates
            for kind in ("success_nodes", "failure_nodes", "always_nodes"):
                for target in (node.get("related") or {}).get(kind) or []:
                    assert target["identifier"] in ids
    chain = dict((n["identifier"], [t["identifier"] for t in (n.get("related") or {}).get("success_nodes") or []])
                 for n in workflows[0]["workflow_nodes"])
    assert chain == {"install": ["backup"], "backup": ["drill"], "drill": []}
    playbooks = dict((t["name"], t["playbook"]) for t in load("job_templates.yml")["controller_templates"])
    order = [playbooks[n["unified_job_template"]["name"]] for n in workflows[0]["workflow_nodes"]]
    assert order == ["playbooks/install.yml", "playbooks/backup.yml", "playbooks/drill.yml"]
    schedules = load("schedules.yml")["controller_schedules"]
    for schedule in schedules:
        assert schedule["unified_job_template"] in templates | set(w["name"] for w in workflows)
        assert "RRULE:FREQ=" in schedule["rrule"] and schedule["rrule"].startswith("DTSTART")
    nightly = next(s for s in schedules if "nightly" in s["name"])
    assert playbooks[nightly["unified_job_template"]] == "playbooks/backup.yml" and "FREQ=DAILY" in nightly["rrule"]
    credential_names = set(c["name"] for c in load("credentials.yml")["controller_credentials"])
    types = set(t["name"] for t in load("credential_types.yml")["controller_credential_types"])
    assert all(c["credential_type"] in types for c in load("credentials.yml")["controller_credentials"])
    for template in load("job_templates.yml")["controller_templates"]:
        assert set(template.get("credentials") or []) <= credential_names
        assert template["project"] in set(p["name"] for p in load("projects.yml")["controller_projects"])
        assert template["inventory"] in set(i["name"] for i in load("projects.yml")["controller_inventories"])


def test_credential_type_marks_secrets_and_injects_what_the_collection_reads():
    (ctype,) = load("credential_types.yml")["controller_credential_types"]
    fields = dict((f["id"], f) for f in ctype["inputs"]["fields"])
    for field in ("kubeconfig", "s3_access_key_id", "s3_secret_access_key"):
        assert fields[field]["secret"] is True, field
    injected = ctype["injectors"]["extra_vars"]
    # fleetdr_kubeconfig is an inventory auth variable (client.HOSTVAR_AUTH); the S3 keys are install options
    assert injected["fleetdr_kubeconfig"] == "{{ tower.filename.kubeconfig }}"
    install = playbook_options("playbooks/install.yml")
    assert {"velero_s3_access_key_id", "velero_s3_secret_access_key"} <= set(install)
    client_source = (REPO / "plugins" / "module_utils" / "client.py").read_text()
    assert '("fleetdr_kubeconfig", "kubeconfig")' in client_source
    assert ctype["injectors"]["file"] == {"template.kubeconfig": "{{ kubeconfig }}"}


def test_awx_files_load_with_include_vars_from_any_directory(tmp_path):
    """A playbook elsewhere (run from elsewhere) loads every file by path; the AWX-side templates stay literal."""
    play = [{
        "name": "Load", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [
            {"name": "Load", "ansible.builtin.include_vars": {"file": str(AWX / name)}, "loop_control": {"label": name}}
            for name in DATA] + [
            {"name": "Check", "ansible.builtin.assert": {"that": [
                "controller_templates | length >= 7",
                "controller_templates | selectattr('survey_enabled', 'defined') | map(attribute='survey_spec.spec') "
                "| map('length') | min > 0",
                "(controller_templates | selectattr('name', 'equalto', 'fleetdr - scheduled backup') | first).extra_vars.backup_name"
                " == 'awx-' ~ '{' ~ '{ awx_job_id }' ~ '}'",
                "controller_credential_types[0].injectors.extra_vars.fleetdr_kubeconfig is search('tower.filename.kubeconfig')",
                "controller_workflows[0].workflow_nodes | length == 3",
                "controller_schedules | length >= 1",
            ]}}],
    }]
    (tmp_path / "elsewhere.yml").write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    run = subprocess.run(check=False, args=[str(BIN / "ansible-playbook"), "elsewhere.yml"], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "failed=0" in run.stdout


def test_apply_playbook_passes_syntax_check():
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    if not env.get("ANSIBLE_COLLECTIONS_PATH") and (REPO / ".build" / "collections").is_dir():
        env["ANSIBLE_COLLECTIONS_PATH"] = str(REPO / ".build" / "collections")
    run = subprocess.run(check=False, args=[str(BIN / "ansible-playbook"), "--syntax-check", str(AWX / "apply.yml")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_project_requirements_install_this_collection_and_kubernetes_core():
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    requirements = yaml.safe_load((REPO / "collections" / "requirements.yml").read_text())["collections"]
    by_name = dict((entry["name"], entry) for entry in requirements)
    assert by_name["kubernetes.core"]["version"] == galaxy["dependencies"]["kubernetes.core"]
    (own,) = [entry for entry in requirements if entry.get("type") == "git"]
    assert own["name"].rstrip("/").removesuffix(".git") == galaxy["repository"].rstrip("/")
    assert "collections" in galaxy["build_ignore"]  # an AWX project file, not part of the built collection
    project = load("projects.yml")["controller_projects"][0]
    assert project["scm_url"].removesuffix(".git") == galaxy["repository"] and project["scm_branch"] == own["version"]
