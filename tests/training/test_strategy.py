"""training.strategy: strategy names and the chief task."""

import types

import pytest

from contractive_keras.training import strategy


def test_one_device_strategy_on_this_machine():
    chosen = strategy.select_strategy("one_device")
    assert chosen.num_replicas_in_sync == 1
    assert strategy.is_chief(chosen)


def test_unknown_strategy_lists_the_known_ones():
    with pytest.raises(ValueError, match="one_device, mirrored, multi_worker or tpu"):
        strategy.select_strategy("parameter_server")


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        strategy.select_strategy("multi_worker")


def _with_task(task_type, task_id, cluster):
    resolver = types.SimpleNamespace(task_type=task_type, task_id=task_id,
                                     cluster_spec=lambda: types.SimpleNamespace(as_dict=lambda: cluster))
    return types.SimpleNamespace(cluster_resolver=resolver)


@pytest.mark.parametrize("task_type, task_id, cluster, chief", [
    ("worker", 0, {"worker": ["a", "b"]}, True),
    ("worker", 1, {"worker": ["a", "b"]}, False),
    ("worker", 0, {"chief": ["c"], "worker": ["a"]}, False),
    ("chief", 0, {"chief": ["c"], "worker": ["a"]}, True),
])
def test_is_chief(task_type, task_id, cluster, chief):
    assert strategy.is_chief(_with_task(task_type, task_id, cluster)) is chief
