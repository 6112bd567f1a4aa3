"""The proxy reads a JSON body as ``json.loads`` (MLflow's reader) does, value for value and
refusal for refusal, however it parses it."""

from __future__ import annotations

import json
import random
import struct

import pytest

from inferwatch.proxy import json_body
from inferwatch.stack.demo_model import SEED_EXAMPLE


def outcome(parse, body: bytes):
    """The value, with each number's type, or the exception's type."""
    try:
        value = parse(body)
    except Exception as error:  # noqa: BLE001 - the exception's type is the outcome
        return type(error)
    return json.dumps(value, default=repr), typed(value)


def typed(value):
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return type(value).__name__, repr(value)


def test_a_seed_batch_reads_the_same():
    example = SEED_EXAMPLE["dataframe_split"]
    body = json.dumps({"dataframe_split": {**example, "data": example["data"] * 5000}}).encode()
    assert outcome(json_body.loads, body) == outcome(json.loads, body)


@pytest.mark.parametrize("seed", range(3))
def test_random_numbers_of_every_form_orjson_reads_read_the_same(seed):
    """Doubles of every bit pattern, decimals of up to 18 digits at any exponent a double holds,
    integers of up to 18 digits: all read by orjson (no run of 19 digits), all as json.loads reads them."""
    rng = random.Random(seed)
    doubles = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(20_000)]
    numbers = [repr(x) for x in doubles if x == x and abs(x) != float("inf")]
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 18)))
        sign = rng.choice(("", "-"))
        numbers += [f"{sign}{digits[0]}.{digits[1:] or '0'}e{rng.randint(-340, 300)}",
                    f"{sign}{digits.lstrip('0') or '0'}", f"{sign}0.{digits}", f"{sign}{digits[0]}E+{rng.randint(0, 20)}",
                    str(rng.randint(-10**18 + 1, 10**18 - 1))]
    # The few with 19 digits in a row (0.000123... with 17 significant digits) go to json.loads.
    body = ("[" + ",".join(n for n in numbers if not json_body._has_long_digit_run(n.encode())) + "]").encode()
    assert not json_body._has_long_digit_run(body) and body.count(b",") > 100_000
    assert outcome(json_body.loads, body) == outcome(json.loads, body)


@pytest.mark.parametrize("body", [
    b"18446744073709551615", b"18446744073709551616", b"-9223372036854775808", b"-9999999999999999999",
    b"123456789012345678901234567890", b'{"id": 12345678901234567890123}', b'["12345678901234567890", 1.5]',
    b"[1e400, -1e400]", b"NaN", b"[Infinity, -Infinity]", b'"\\ud800"', b'{"a": 1, "a": 2}',
    "\ufeff{}".encode(), '{"text": "na\u00efve"}'.encode("utf-16"), '[1, "\u2603"]'.encode("utf-32"),
    b"[" * 5000 + b"]" * 5000, b"1" * 5000, b"{", b"", b" [1] ", b"[1] x", b'{"a": "\x01"}', b"\xff\xfe\x00",
    b"-0", b"0.1e-400", b"5e-324",
])
def test_each_body_orjson_would_read_otherwise_reads_as_json_loads_reads_it(body):
    assert outcome(json_body.loads, body) == outcome(json.loads, body)


def test_nesting_is_read_to_1024_levels_and_refused_beyond_as_json_loads_refuses_it():
    """The one band where the readers differ: orjson reads 1,024 levels, json.loads stops at the
    interpreter's recursion limit less the frames in use; beyond 1,024 both refuse."""
    deepest = json_body.loads(b"[" * 1024 + b"]" * 1024)
    for _ in range(1023):
        [deepest] = deepest
    assert deepest == []
    with pytest.raises(RecursionError):
        json_body.loads(b"[" * 1025 + b"]" * 1025)
