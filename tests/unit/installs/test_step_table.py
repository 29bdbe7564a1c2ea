"""The step kinds table, the step transitions and the typed plan, without a database."""

import dataclasses

import pytest
from django.conf import settings
from django.utils.module_loading import import_string

from installs.plan import (
    PLAN_VERSION,
    BmcPlan,
    MachinePlan,
    Plan,
    PlanField,
    ProfilePlan,
    SitePlan,
    plan_steps,
)
from installs.states import STEP_DONE_STATES, STEP_TRANSITIONS, TRANSITIONS, InstallState, StepState
from installs.stepkinds import KINDS, Mover, StepKind, StepKindSpec
from inventory.models import InstallMethod


def a_plan(method=InstallMethod.PRESEED, **profile) -> Plan:
    return Plan(
        site=SitePlan(slug="lab", tftp_root="/srv/tftp", base_url="http://127.0.0.1:8000"),
        machine=MachinePlan(
            hostname="node-1",
            short="node-1",
            domain="lab.example",
            mac="52:54:00:00:00:01",
            ip="10.0.0.5",
            prefix=24,
            gateway="10.0.0.1",
            dns=("10.0.0.53",),
            rack_id=7,
        ),
        bmc=BmcPlan(driver="fake"),
        profile=ProfilePlan(
            **{
                "name": "p",
                "method": method,
                "kernel": "/k",
                "initrd": "/i",
                "kernel_args": "",
                "template": "",
                "image_url": "http://x/img.gz",
                "image_sha256": "ab" * 32,
                "target_disk": "",
                "legacy_anaconda": False,
                "root_password_hash": "$6$locked$*",
                "ssh_keys": ("ssh-ed25519 AAAA k",),
                **profile,
            }
        ),
        step_count=10,
    )


def test_every_step_kind_has_a_row_and_every_row_is_usable():
    assert set(KINDS) == set(StepKind.values)
    for spec in KINDS.values():
        assert (spec.phase is None or spec.phase in TRANSITIONS) and spec.label
        if spec.mover == Mover.WORKER:
            # Named by dotted path (the boundary test cannot read a string as an import): always a runner
            # of installs.steps, never a module of another layer.
            assert spec.runner.startswith("installs.steps."), spec.kind
            assert callable(import_string(spec.runner)), spec.kind
        if spec.mover != Mover.WORKER or spec.waits_for:
            assert isinstance(getattr(settings, spec.deadline_setting), int | float), spec.kind
            reason, message = spec.timeout(host="node-1", minutes=3, task="write_image")
            assert reason and "node-1" in message and "{" not in message


def test_the_table_refuses_a_row_that_cannot_work():
    with pytest.raises(ValueError, match="needs a runner"):
        StepKindSpec("probe", InstallState.VERIFYING, Mover.WORKER, label="Probe")
    with pytest.raises(ValueError, match="give its deadline"):
        StepKindSpec("hold", InstallState.VERIFYING, Mover.WAIT, label="Hold")
    with pytest.raises(ValueError, match="give it a label"):
        StepKindSpec("probe", InstallState.VERIFYING, Mover.WORKER, runner="installs.steps.verify")


def test_verify_waits_for_the_first_boot_of_an_image_and_is_a_worker_step_otherwise():
    verify = KINDS[StepKind.VERIFY]
    assert verify.mover_for(InstallMethod.IMAGE) == Mover.WAIT
    assert verify.mover_for(InstallMethod.KICKSTART) == Mover.WORKER


def test_an_agent_step_is_labelled_by_its_task():
    assert KINDS[StepKind.AGENT_TASK].title("write_image") == "Agent: write image"
    assert KINDS[StepKind.CHECK_BMC].title() == "Check the BMC"


def test_step_transitions_end_in_the_done_states_and_every_active_state_can_stop():
    for state in StepState:
        assert state in STEP_TRANSITIONS
    for state in STEP_DONE_STATES:
        assert STEP_TRANSITIONS[state] == frozenset()
    for state in set(StepState) - STEP_DONE_STATES:
        assert {StepState.FAILED, StepState.SKIPPED} <= STEP_TRANSITIONS[state]
    assert StepState.PENDING not in STEP_TRANSITIONS[StepState.WAITING]  # a wait is never retried


@pytest.mark.parametrize(
    ("method", "kinds"),
    [
        (
            InstallMethod.PRESEED,
            ["check_bmc", "write_boot_config", "set_boot_pxe", "power_cycle", "wait_boot", "wait_installer",
             "remove_boot_config", "set_boot_disk", "verify", "verify_ssh"],
        ),
        (
            InstallMethod.IMAGE,
            ["check_bmc", "write_boot_config", "set_boot_pxe", "power_cycle", "wait_boot"] + ["agent_task"] * 6
            + ["remove_boot_config", "set_boot_disk", "reboot", "verify", "verify_ssh"],
        ),
    ],
)  # fmt: skip
def test_the_plan_has_the_steps_of_its_method_in_the_tables_order(method, kinds):
    assert [s.kind for s in plan_steps(a_plan(method))] == kinds


def test_a_plan_survives_its_json_and_json_only_reaches_the_database():
    plan = a_plan(InstallMethod.IMAGE)
    data = plan.to_json()
    assert data["version"] == PLAN_VERSION and data["machine"]["dns"] == ["10.0.0.53"]
    assert Plan.from_json(data) == plan
    assert PlanField().get_prep_value(plan) == data


def test_a_plan_stored_before_plans_had_a_version_or_a_step_count_still_loads():
    data = a_plan().to_json()
    del data["version"], data["step_count"]
    plan = Plan.from_json(data)
    assert plan.version == PLAN_VERSION and plan.step_count == 0 and plan.machine.rack_id == 7
    # A plan from before workflows runs the stock workflow of its method, as installs then did.
    assert plan.workflow is None and plan.flow.name.startswith("stock-")


@pytest.mark.parametrize(
    "broken",
    [
        lambda d: d.update(version=PLAN_VERSION + 1),
        lambda d: d["machine"].pop("mac"),
        lambda d: d["profile"].update(colour="blue"),
    ],
    ids=["a later version", "a missing key", "an unknown key"],
)
def test_a_plan_this_release_cannot_read_is_refused_by_name(broken):
    data = a_plan().to_json()
    broken(data)
    with pytest.raises(ValueError, match="version|plan"):
        Plan.from_json(data)


def test_the_plan_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        a_plan().machine.mac = "x"  # type: ignore[misc]
