"""coeffs.json and the price table: what loads, and what is refused with the key named."""

from __future__ import annotations

import json
import math

import pytest

from fasdl.errors import InvalidInput
from fasdl.perf.coefficients import REQUIRED_KEYS, Coefficients, read_coefficients
from fasdl.pricing import BILLED_AS, PRICED_KINDS, load_prices, prices_from_dict
from fasdl.store import REQUEST_KINDS

GOOD = {"a": 600.0, "b": 10.0, "m": 200.0, "k1": 2.0, "k2": -0.2, "model_size_mb": 45.0}


def test_hand_written_six_keys_load(tmp_path):
    path = tmp_path / "coeffs.json"
    path.write_text(json.dumps(GOOD))
    c = read_coefficients(path)
    assert (c.a, c.b, c.m, c.k1, c.k2, c.model_size_mb) == tuple(GOOD.values())
    assert c.transfer is None and c.num_params is None
    assert c.train_s(40, 1024) == pytest.approx(600 * 50 / 1224)
    assert c.transform_s(1024) == pytest.approx(2.0 * 1024**-0.2)


def test_optional_keys_and_provenance_are_kept():
    d = dict(
        GOOD,
        num_params=11_000_000,
        transfer={"kind": "preset", "name": "aws"},
        provenance={"fitted_on": "resnet18", "r2": 0.99},
    )
    c = Coefficients.from_dict(d)
    assert c.num_params == 11_000_000
    assert c.transfer == {"kind": "preset", "name": "aws"}
    assert c.provenance == {"fitted_on": "resnet18", "r2": 0.99}


def test_unknown_top_level_key_is_refused_by_name():
    # One schema for coeffs.json: notes belong inside "provenance", a misspelt key is an error.
    with pytest.raises(InvalidInput, match="unknown keys fitted_on"):
        Coefficients.from_dict(dict(GOOD, fitted_on="resnet18"))


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_key_is_named(key):
    d = {k: v for k, v in GOOD.items() if k != key}
    with pytest.raises(InvalidInput, match=key):
        Coefficients.from_dict(d)


@pytest.mark.parametrize(
    "key,value", [("a", "600"), ("b", None), ("m", True), ("k2", math.inf), ("k1", [1])]
)
def test_malformed_value_is_named(key, value):
    with pytest.raises(InvalidInput, match=f"{key}"):
        Coefficients.from_dict(dict(GOOD, **{key: value}))


@pytest.mark.parametrize(
    "key,value", [("a", 0.0), ("a", -5.0), ("k1", -1.0), ("model_size_mb", 0.0)]
)
def test_impossible_value_is_refused(key, value):
    with pytest.raises(InvalidInput, match=key):
        Coefficients.from_dict(dict(GOOD, **{key: value}))


def test_not_an_object_and_not_json(tmp_path):
    with pytest.raises(InvalidInput, match="JSON object"):
        Coefficients.from_dict([1, 2, 3])
    bad = tmp_path / "c.json"
    bad.write_text("{a: 1")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        read_coefficients(bad)
    with pytest.raises(InvalidInput, match="no file"):
        read_coefficients(tmp_path / "missing.json")


def test_aws_prices_per_request_and_per_arch():
    x86 = load_prices("aws", "x86")
    arm = load_prices("aws", "arm64")
    assert x86.usd_per_gb_second == pytest.approx(0.0000166667)
    assert arm.usd_per_gb_second == pytest.approx(0.0000133334)
    assert x86.usd_per_invocation == pytest.approx(0.20 / 1e6)
    assert x86.request_usd("PUT") == pytest.approx(0.005 / 1000)
    assert x86.request_usd("LIST") == pytest.approx(0.005 / 1000)
    assert x86.request_usd("GET") == pytest.approx(0.0004 / 1000)
    assert x86.request_usd("DELETE") == 0


def test_price_file_replaces_the_preset(tmp_path):
    table = {
        "function": {"usd_per_gb_second": {"x86": 1.0}, "usd_per_million_requests": 2.0},
        "store": {"usd_per_1000_requests": {"PUT": 3.0, "GET": 4.0, "LIST": 5.0, "DELETE": 6.0}},
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(table))
    p = load_prices(str(path))
    assert (p.usd_per_gb_second, p.usd_per_invocation, p.request_usd("DELETE")) == (1.0, 2e-6, 6e-3)
    with pytest.raises(InvalidInput, match="arm64"):
        load_prices(str(path), "arm64")
    del table["store"]["usd_per_1000_requests"]["GET"]
    with pytest.raises(InvalidInput, match="GET"):
        prices_from_dict(table)
    with pytest.raises(InvalidInput, match="no file"):
        load_prices(str(tmp_path / "none.json"))


def test_one_request_kind_list_a_head_is_billed_as_a_get():
    # The store's kinds are the only list; a table prices all but HEAD, which S3 bills as a GET.
    assert set(PRICED_KINDS) | set(BILLED_AS) == set(REQUEST_KINDS)
    p = load_prices("aws")
    assert p.request_usd("HEAD") == p.request_usd("GET")
    assert p.storage_cost({k: 1000 for k in REQUEST_KINDS}) == pytest.approx(
        1000 * (sum(p.request_usd(k) for k in PRICED_KINDS) + p.request_usd("GET"))
    )
