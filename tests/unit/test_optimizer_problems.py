"""Why a configuration cannot run: named codes with stable values, and their reasons."""

from __future__ import annotations

from fasdl.optimizer.model import OK, PROBLEMS, Problem


def test_problem_codes_keep_their_values() -> None:
    assert [(p.name, int(p)) for p in Problem] == [
        ("OK", 0),
        ("K_OUT_OF_RANGE", 1),
        ("AGGREGATOR_BATCHES_OVER_CAP", 2),
        ("NONAGG_CANNOT_TRAIN_ONE_SAMPLE", 3),
        ("NONAGG_BATCH_UNDER_ONE", 4),
        ("ITERATION_OVER_FUNCTION_TIME", 5),
        ("MEMORY_NOT_ABOVE_M", 6),
        ("GLOBAL_BATCH_OVER_DATA", 7),
        ("OVER_MAX_VCPUS", 8),
        ("EQUAL_BATCHES_OVER_CAP", 9),
    ]
    assert OK is Problem.OK == 0


def test_every_problem_but_ok_has_a_reason() -> None:
    assert set(PROBLEMS) == set(Problem) - {Problem.OK}
    assert PROBLEMS[1] == Problem.K_OUT_OF_RANGE.reason == "K must be between 1 and W"
    assert all(p.reason for p in PROBLEMS)
