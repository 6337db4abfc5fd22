"""Reading single fields straight from BSON bytes agrees with a full decode."""

from __future__ import annotations

import bson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wire.bson_raw import get_bool, get_number

_values = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1).map(bson.Int64),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=5),
    st.none(),
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(before=st.dictionaries(st.sampled_from(["a", "b"]), _values), value=_values)
def test_get_number_and_get_bool_match_decode(before: dict[str, object], value: object) -> None:
    raw = bson.encode({**before, "k": value})
    number = get_number(raw, "k")
    flag = get_bool(raw, "k")
    if isinstance(value, bool):
        assert flag is value and number is None
    elif isinstance(value, int | float):
        assert flag is None and number == float(value)
    else:
        assert flag is None and number is None


def test_absent_fields_are_none() -> None:
    raw = bson.encode({"maxTimeMS": 5})
    assert get_number(raw, "autocommit") is None
    assert get_bool(raw, "autocommit") is None
    assert get_number(raw, "maxTimeMS") == 5.0
