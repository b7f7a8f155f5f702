"""The queue model behind the fake vLLM metrics: replicas drain it, Pending pods do not."""

import pytest

from gpufinops.demo.queue import COMPLETION_TOKENS, PROMPT_TOKENS, QueueModel


def run(model: QueueModel, rate: float, pods: list[str], seconds: int) -> None:
    for _ in range(seconds):
        model.step(rate, pods, 1.0)


def test_below_capacity_nothing_waits_and_completions_follow_arrivals() -> None:
    model = QueueModel(replica_rps=2.0)
    run(model, 3.0, ["a", "b"], 10)
    assert model.waiting == 0
    assert model.completed == pytest.approx(30.0)
    assert model.running == pytest.approx(2 * 16 * 0.75)  # 3 of 4 req/s of capacity busy


def test_above_capacity_the_queue_grows_by_the_excess() -> None:
    model = QueueModel(replica_rps=2.0)
    run(model, 5.0, ["a"], 10)
    assert model.waiting == pytest.approx(30.0)
    assert model.completed == pytest.approx(20.0)
    assert model.running == pytest.approx(16)


def test_more_replicas_drain_the_queue() -> None:
    model = QueueModel(replica_rps=2.0)
    run(model, 5.0, ["a"], 10)
    run(model, 5.0, ["a", "b", "c", "d"], 10)  # 8 req/s: drains 3 a second
    assert model.waiting == pytest.approx(0.0)


def test_without_ready_pods_nothing_is_served_and_no_series_exist() -> None:
    model = QueueModel(replica_rps=2.0)
    samples = model.step(4.0, [], 1.0)
    assert samples == {} and model.waiting == 4.0 and model.running == 0


def test_clients_give_up_beyond_the_longest_wait() -> None:
    model = QueueModel(replica_rps=1.0, max_wait_seconds=10)
    run(model, 11.0, ["a"], 5)  # 10 a second in excess, capped at 10 s x 11 req/s
    assert model.waiting == pytest.approx(50.0)
    run(model, 11.0, ["a"], 10)
    assert model.waiting == pytest.approx(110.0)
    assert model.abandoned == pytest.approx(40.0)


def test_each_pod_reports_its_share_and_its_own_monotonic_counters() -> None:
    model = QueueModel(replica_rps=2.0)
    first = model.step(6.0, ["a", "b"], 1.0)
    assert first["a"].waiting == pytest.approx(1.0) and first["a"].success_total == 2.0
    later = model.step(6.0, ["a", "b", "c"], 1.0)  # 2 waiting + 6 new, 6 served
    assert later["a"].success_total == pytest.approx(4.0)
    assert later["c"].success_total == pytest.approx(2.0)  # a new pod's counter starts at 0
    assert later["c"].prompt_tokens_total == pytest.approx(2 * PROMPT_TOKENS)
    assert later["c"].generation_tokens_total == pytest.approx(2 * COMPLETION_TOKENS)
    again = model.step(6.0, ["a", "c"], 1.0)  # b went away: a returning b starts again
    assert set(again) == {"a", "c"}
    returned = model.step(0.0, ["a", "b"], 1.0)
    assert returned["b"].success_total < later["b"].success_total


def test_kv_cache_follows_how_busy_the_pods_are() -> None:
    model = QueueModel(replica_rps=2.0)
    assert model.step(1.0, ["a"], 1.0)["a"].kv_cache == pytest.approx(0.45)
    assert model.step(9.0, ["a"], 1.0)["a"].kv_cache == pytest.approx(0.9)


def test_nonsense_capacity_is_refused() -> None:
    with pytest.raises(ValueError):
        QueueModel(replica_rps=0)
