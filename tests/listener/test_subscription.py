"""The subscription's reconnect backoff and its connection liveness, as pure logic."""

from __future__ import annotations

import random

import pytest

from probe_listener.liveness import Due, Liveness
from probe_listener.subscription import backoff_delay


def test_reconnect_backoff_is_quick_first_then_capped() -> None:
    rng = random.Random(1)
    assert all(0.05 <= backoff_delay(0, 30, rng) <= 0.1 for _ in range(100))
    assert all(0.4 <= backoff_delay(3, 30, rng) <= 0.8 for _ in range(100))
    assert all(0.4 <= backoff_delay(20, 0.8, rng) <= 0.8 for _ in range(100))


def fresh(mono: float = 0.0) -> Liveness:
    return Liveness.opened(ping_interval=10, pong_timeout=5, heartbeat_every=1, wall=1000.0, mono=mono)


def test_a_ping_is_due_every_interval_and_a_pong_clears_it() -> None:
    alive = fresh()
    assert alive.due(0.5) is Due.NOTHING
    assert alive.due(1.0) is Due.HEARTBEAT
    alive.heartbeat_written(1.0)
    assert alive.due(10.0) is Due.PING
    alive.pinged(10.0)
    alive.heartbeat_written(10.0)
    assert alive.due(10.5) is Due.NOTHING  # waiting for the pong, no second ping
    alive.pong(1010.4)
    assert alive.last_alive == 1010.4 and alive.ping_sent_at is None
    assert alive.due(15.2) is Due.HEARTBEAT  # no DEAD: the pong came
    alive.heartbeat_written(15.2)
    assert alive.due(20.0) is Due.PING


def test_an_unanswered_ping_is_dead_after_the_pong_timeout_and_ends_at_the_last_proof() -> None:
    alive = fresh()
    alive.frame(1003.0)
    alive.pinged(10.0)
    alive.frame(1012.0)  # data frames prove life, but do not answer the ping
    assert alive.due(15.0) is not Due.DEAD
    assert alive.due(15.01) is Due.DEAD
    assert alive.last_alive == 1012.0  # the interval ends here, not at detection


def test_dead_wins_over_a_due_heartbeat() -> None:
    alive = fresh()
    alive.pinged(10.0)
    assert alive.due(30.0) is Due.DEAD


def test_the_loop_blocks_until_the_next_thing_is_due_and_no_longer() -> None:
    alive = Liveness.opened(ping_interval=10.0, pong_timeout=5.0, heartbeat_every=4.0, wall=1000.0, mono=0.0)
    assert alive.wait_for(0.0) == 4.0  # the first heartbeat comes before the first ping
    alive.heartbeat_written(4.0)
    assert alive.wait_for(4.0) == 4.0
    alive.heartbeat_written(8.0)
    assert alive.wait_for(8.0) == 2.0  # now the ping is next
    alive.pinged(10.0)
    assert alive.wait_for(10.0) == 2.0  # the heartbeat at 12 comes before the pong deadline at 15
    alive.heartbeat_written(12.0)
    assert alive.wait_for(12.0) == 3.0  # the pong deadline
    assert alive.wait_for(20.0) == 0.0  # overdue: no waiting at all
    alive.pong(1010.5)
    assert alive.wait_for(12.0) == 4.0  # the next ping at 20, the next heartbeat at 16


def test_noise_may_take_its_share_of_cpu_and_no_more() -> None:
    from probe_listener.budget import Budget

    budget = Budget.full(0.0, share=0.05, burst=0.01)
    assert budget.pause(0.0) == 0.0
    budget.spend(0.008, 0.0)
    assert budget.pause(0.0) == 0.0  # a short burst of noise is never held back
    budget.spend(0.012, 0.0)  # 10 ms over: 0.2 s at 5 % of a core to earn it back
    assert budget.pause(0.0) == pytest.approx(0.2)
    assert budget.pause(0.1) == pytest.approx(0.1)
    assert budget.pause(0.2) == 0.0
    assert budget.pause(100.0) == 0.0 and budget.balance == 0.01  # credit never grows past the burst
    budget, spent, now = Budget.full(0.0, share=0.05, burst=0.01), 0.0, 0.0
    while now < 60:  # a flood that would use every cycle it gets
        wait = budget.pause(now)
        if wait:
            now += wait
            continue
        budget.spend(0.001, now)
        spent, now = spent + 0.001, now + 0.001
    assert spent / now == pytest.approx(0.05, rel=0.05)
