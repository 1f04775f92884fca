"""The exception hierarchy: every domain error in errors.py, user mistakes apart from faults."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

import fasdl
from fasdl import errors
from fasdl.errors import (
    CorruptObject,
    FasdlError,
    InvalidInput,
    InvocationFailed,
    JobFailed,
    NoPlan,
    PayloadTooLarge,
    PlanInfeasible,
    SeaweedError,
    StoreError,
)

PACKAGE = Path(fasdl.__file__).parent


def _exception_classes(path: Path) -> list[str]:
    """Classes defined in ``path`` whose bases name an Error, an Exception or InvalidInput."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b) for b in node.bases]
            if any(b.endswith(("Error", "Exception", "InvalidInput", "Infeasible")) for b in bases):
                found.append(node.name)
    return found


def test_every_exception_class_lives_in_errors_py() -> None:
    elsewhere = {
        str(p.relative_to(PACKAGE)): names
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name != "errors.py" and (names := _exception_classes(p))
    }
    assert elsewhere == {}


@pytest.mark.parametrize("cls", [JobFailed, InvocationFailed, NoPlan, SeaweedError, CorruptObject])
def test_runtime_errors_are_failures_not_user_mistakes(cls: type) -> None:
    assert issubclass(cls, FasdlError) and not issubclass(cls, InvalidInput)


def test_corrupt_object_is_a_store_error_naming_the_key() -> None:
    e = CorruptObject("tmp/job/ckpt/w0", "truncated")
    assert isinstance(e, StoreError) and isinstance(e, ValueError)
    assert str(e) == "object 'tmp/job/ckpt/w0' is corrupt: truncated"
    assert e.key == "tmp/job/ckpt/w0" and e.problem == "truncated"


def test_invalid_input_keeps_its_field_and_is_shown_as_the_users_name() -> None:
    e = InvalidInput("num_aggregators", "0 is below 1", "use at least one aggregator")
    assert str(e) == "num_aggregators: 0 is below 1 (use at least one aggregator)"
    assert e.named_as("-K/--aggregators") is e
    assert str(e) == "-K/--aggregators: 0 is below 1 (use at least one aggregator)"
    assert e.field == "num_aggregators" and e.shown_as == "-K/--aggregators"


@pytest.mark.parametrize(
    "error",
    [
        InvalidInput("memory_mb", "100 MB is outside 128–10,240 MB", "fix").named_as("--memory"),
        PayloadTooLarge("payload", "too big"),
        CorruptObject("k", "bad"),
        NoPlan("none", fastest_time_s=1.0, cheapest_cost_usd=2.0),
        JobFailed("worker 1 failed"),
    ],
)
def test_errors_survive_pickling(error: Exception) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    assert vars(back) == vars(error)


def test_no_plan_is_plan_infeasible() -> None:
    assert issubclass(NoPlan, PlanInfeasible)
    assert errors.__doc__ and "InvalidInput" in errors.__doc__
