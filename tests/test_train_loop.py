"""RunConfig.time_is_up: the wall-time budget every training stage stops on."""

import time

from gmodiff.train.loop import RunConfig


def test_no_budget_never_stops():
    assert not RunConfig(max_minutes=None).time_is_up(time.perf_counter() - 1e6)


def test_budget_spent_or_not():
    config = RunConfig(max_minutes=1.0)
    assert not config.time_is_up(time.perf_counter())
    assert config.time_is_up(time.perf_counter() - 61.0)


class _TwoRanks:
    """Stand-in accelerator whose other rank has already run out of time."""

    num_processes = 2
    device = "cpu"

    def reduce(self, tensor, reduction):
        assert reduction == "sum"
        return tensor + 1.0


def test_one_rank_out_of_time_stops_every_rank():
    assert RunConfig(max_minutes=1.0).time_is_up(time.perf_counter(), _TwoRanks())
