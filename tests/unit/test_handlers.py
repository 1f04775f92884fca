"""Handlers are named by the packages that own them; the platform names none of theirs."""

from __future__ import annotations

import importlib

import pytest

from fasdl.errors import InvalidInput
from fasdl.platform import HANDLERS, Handler
from fasdl.platform.base import load_handler
from fasdl.platform.inline import InlinePlatform

PACKAGE_HANDLERS = [
    ("fasdl.kreduce.worker", "kreduce_worker"),
    ("fasdl.profiler.handler", "profile"),
]


def _echo(event, context):
    return {"echo": event, "function_name": context.function_name}


@pytest.mark.parametrize("module,name", PACKAGE_HANDLERS)
def test_each_package_names_its_own_handler(module, name):
    mod = importlib.import_module(module)
    assert Handler(name, f"{module}:handler") == mod.HANDLER
    # The target is all a fresh process needs: importing it finds the function.
    assert load_handler(mod.HANDLER.target) is mod.handler


def test_the_platform_registry_names_no_package_above_it():
    assert set(HANDLERS) == {"smoke", "cnn_steps"}
    assert all(t.startswith("fasdl.platform.") for t in HANDLERS.values())


def test_a_handler_is_invoked_by_target_and_recorded_by_name():
    with InlinePlatform() as plat:
        inv = plat.invoke(
            Handler("echo", f"{__name__}:_echo"), {"x": 1}, memory_mb=128, timeout_s=30
        )
        assert inv.result(timeout_s=30) == {"echo": {"x": 1}, "function_name": "echo"}
        assert inv.handler == "echo" and plat.records()[0].handler == "echo"


@pytest.mark.parametrize("name,target", [("", "m:f"), ("x", "no_colon")])
def test_a_malformed_handler_is_refused(name, target):
    with pytest.raises(InvalidInput, match="handler"):
        Handler(name, target)
