"""The proxy and the SDK agree on Argon's error codes and their names."""

from __future__ import annotations

from argon import codes
from argon.errors import _BY_CODE
from argon_proxy.errors import ArgonError as ProxyError


def test_every_argon_code_has_its_sdk_class_and_the_proxy_names_it_so() -> None:
    for code, name in codes.NAMES.items():
        assert code in _BY_CODE, f"no SDK class for {code} {name}"
        assert _BY_CODE[code].__name__ in (name, f"{name}Error"), (code, _BY_CODE[code])
        assert ProxyError(code, "x").code_name == name
        assert ProxyError(code, "x").to_document()["codeName"] == name


def test_the_mongod_codes_the_sdk_raises_are_named_as_the_proxy_names_them() -> None:
    for code, cls in _BY_CODE.items():
        if code in codes.NAMES:
            continue
        assert ProxyError(code, "x").code_name == cls.__name__.removesuffix("Error"), code
