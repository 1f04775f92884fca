"""JobConfig refuses what would corrupt a run: overlapping prefixes, unknown payload keys, numbers
that are not finite, negative momentum. Each names the field and says how to fix it."""

from __future__ import annotations

import math

import pytest

from fasdl.errors import InvalidInput, OverlappingPrefixes
from fasdl.kreduce.config import (
    PREFIX_FIELDS,
    SEED_FIELDS,
    JobConfig,
    check_payload_keys,
)
from fasdl.optimizer.grid import memory_grid
from fasdl.optimizer.model import Scenario
from fasdl.optimizer.plan import PLAN_JSON_KEYS, optimize
from fasdl.perf.coefficients import Coefficients
from fasdl.perf.transfer import load_transfer
from fasdl.pricing import load_prices


def test_the_defaults_are_valid_and_derive_the_peer_timeout() -> None:
    cfg = JobConfig()
    assert cfg.comm_timeout_s is None  # derived by the workers (fasdl.kreduce.timeouts)
    assert JobConfig(comm_timeout_s=30).comm_timeout_s == 30
    assert JobConfig.from_dict(cfg.to_dict()) == cfg  # None survives the worker's event


# -- prefixes --------------------------------------------------------------------------------
PAIRS = [(a, b) for j, b in enumerate(PREFIX_FIELDS) for a in PREFIX_FIELDS[:j]]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_equal_prefixes_are_refused_naming_both(a: str, b: str) -> None:
    with pytest.raises(OverlappingPrefixes) as e:
        JobConfig(**{a: "shared", b: "shared"})
    assert e.value.field == b and e.value.other_field == a
    assert "are the same" in e.value.problem
    assert a.removesuffix("_prefix") in e.value.problem and b.removesuffix("_prefix") in str(
        e.value
    )
    assert e.value.fix


@pytest.mark.parametrize(("a", "b"), PAIRS)
@pytest.mark.parametrize("outer_first", [True, False])
def test_a_prefix_inside_another_is_refused(a: str, b: str, outer_first: bool) -> None:
    outer, inner = (a, b) if outer_first else (b, a)
    with pytest.raises(OverlappingPrefixes, match="holds the"):
        JobConfig(**{outer: "x", inner: "x/y/"})


@pytest.mark.parametrize(
    ("changes", "field", "fix"),
    [
        ({"output_prefix": "tmp"}, "output_prefix", "deletes its tmp, merged and partition"),
        ({"tmp_prefix": "merged"}, "merged_prefix", "its own path"),
        ({"data_prefix": "partition/cifar"}, "partition_prefix", "read-only input"),
        ({"tmp_prefix": "./merged/"}, "merged_prefix", ""),  # the same key path
        ({"tmp_prefix": "work//merged", "merged_prefix": "work/merged"}, "merged_prefix", ""),
        ({"output_prefix": "TMP"}, "output_prefix", ""),  # a file store may ignore case
    ],
)
def test_overlaps_name_the_field_and_the_fix(changes, field: str, fix: str) -> None:
    with pytest.raises(OverlappingPrefixes) as e:
        JobConfig(**changes)
    assert e.value.field == field and fix in e.value.fix


@pytest.mark.parametrize(
    "changes",
    [
        {"tmp_prefix": "tmpx"},  # a string prefix, not a key path prefix
        {"tmp_prefix": "run/tmp", "merged_prefix": "run/merged", "output_prefix": "run/out"},
        {"data_prefix": "datasets/cifar10", "partition_prefix": "datasets/partitions"},
    ],
)
def test_apart_prefixes_are_fine(changes) -> None:
    JobConfig(**changes)


@pytest.mark.parametrize("bad", ["", ".", "/", "./", "/abs", "a/../b"])
def test_a_prefix_must_be_a_relative_path(bad: str) -> None:
    with pytest.raises(InvalidInput, match="not a relative prefix") as e:
        JobConfig(tmp_prefix=bad)
    assert e.value.field == "tmp_prefix"


# -- payload keys ----------------------------------------------------------------------------
def test_an_unknown_key_is_refused_with_the_closest_known_one() -> None:
    with pytest.raises(InvalidInput) as e:
        JobConfig.from_payload({"train_net": "mlp", "num_worker": 8})
    assert e.value.field == "num_worker"
    assert str(e.value) == "num_worker: unknown key (did you mean 'num_workers'?)"
    with pytest.raises(InvalidInput, match="did you mean 'l_r'"):
        JobConfig.from_payload({"l_rr": "0.1"})
    with pytest.raises(InvalidInput, match=r"known: .*batch_size_agg.*train_net") as e:
        JobConfig.from_payload({"zzzzzz": 1})
    assert e.value.field == "zzzzzz"


def test_seed_keys_and_our_fields_are_known() -> None:
    check_payload_keys(dict.fromkeys(SEED_FIELDS, "x"))
    check_payload_keys(JobConfig().to_dict())


def test_extra_keys_are_accepted_and_ignored() -> None:
    cfg = JobConfig.from_payload(
        {"num_workers": 3, "predicted_time_s": 1.0}, extra_keys={"predicted_time_s"}
    )
    assert cfg.num_workers == 3
    with pytest.raises(InvalidInput, match="did you mean 'predicted_time_s'"):
        JobConfig.from_payload({"predicted_time": 1.0}, extra_keys={"predicted_time_s"})


def test_the_optimizers_plan_keys_are_exactly_its_json() -> None:
    """``fasdl train --plan`` knows every key of ``fasdl optimize --json``, and only those."""
    coeffs = Coefficients.from_dict(
        {"a": 400.0, "b": 8.0, "m": 50.0, "k1": 2.0, "k2": -0.3, "model_size_mb": 0.12}
    )
    scenario = Scenario(coeffs=coeffs, prices=load_prices("aws"), samples=300, epochs=1)
    plan = optimize(
        scenario,
        load_transfer("aws"),
        deadline_s=600,
        memories=memory_grid(512, 1024, 512),
        max_workers=3,
    ).to_dict()
    assert set(plan) == PLAN_JSON_KEYS
    cfg = JobConfig.from_payload(plan, extra_keys=PLAN_JSON_KEYS, model="mlp")
    assert (cfg.num_workers, cfg.memory_mb) == (plan["num_workers"], plan["memory"])
    with pytest.raises(InvalidInput, match="unknown key"):
        JobConfig.from_payload(plan)  # a plan read as a payload: its prediction is not a job's


# -- numbers ---------------------------------------------------------------------------------
FLOATS = ["lr", "momentum", "weight_decay", "func_time_s", "comm_timeout_s"]
INTS = ["num_workers", "num_aggregators", "batch_size_agg", "batch_size_wor", "epochs", "memory_mb"]


@pytest.mark.parametrize("name", FLOATS + INTS + ["seed", "max_iterations_per_invocation"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", "-Infinity"])
def test_numbers_that_are_not_finite_are_refused(name: str, value: object) -> None:
    with pytest.raises(InvalidInput) as e:
        JobConfig.from_payload({name: value})
    assert e.value.field == name


@pytest.mark.parametrize("name", ["momentum", "weight_decay"])
def test_negative_momentum_and_weight_decay_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="below 0") as e:
        JobConfig(**{name: -0.5})
    assert e.value.field == name
    with pytest.raises(InvalidInput):
        JobConfig.from_payload({name: "-0.1"})


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "soon"])
def test_a_given_comm_timeout_is_a_positive_finite_number(bad: object) -> None:
    with pytest.raises(InvalidInput) as e:
        JobConfig.from_payload({"comm_timeout_s": bad})
    assert e.value.field == "comm_timeout_s"


def test_an_overlap_pickles_with_both_fields() -> None:
    import pickle

    e = OverlappingPrefixes("merged_prefix", "tmp_prefix", "same", "fix").named_as("x in p.json")
    back = pickle.loads(pickle.dumps(e))
    assert isinstance(back, OverlappingPrefixes)
    assert (back.field, back.other_field, back.shown_as, str(back)) == (
        "merged_prefix",
        "tmp_prefix",
        "x in p.json",
        str(e),
    )
