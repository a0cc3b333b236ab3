from __future__ import annotations

import pytest

from groundwork.execution.resources import plan_slots
from groundwork.loop import RunBusy, controller_lock


def test_cpu_slots_share_the_cores():
    plan = plan_slots(2, gpus_per_job=0, cpu_count=2)
    assert plan.slots == 2 and plan.threads == 1 and plan.gpus == {0: [], 1: []}
    assert plan_slots(1, gpus_per_job=0, cpu_count=8).threads == 8


def test_gpu_slots_get_disjoint_devices():
    plan = plan_slots(8, gpus_per_job=2, cpu_count=16, gpus=[0, 1, 2, 3, 4])
    assert plan.slots == 2 and plan.gpus == {0: [0, 1], 1: [2, 3]} and plan.threads == 8


def test_gpu_profile_without_gpus_is_a_clear_error():
    with pytest.raises(RuntimeError, match="needs 1 GPU.*0 are visible.*--profile tiny"):
        plan_slots(2, gpus_per_job=1, cpu_count=2, gpus=[])


def test_one_controller_per_run(tmp_path):
    with controller_lock(tmp_path):
        with pytest.raises(RunBusy, match=r"already being driven by pid \d+"):
            with controller_lock(tmp_path):
                pass
    with controller_lock(tmp_path):  # released when the first one ends
        pass
