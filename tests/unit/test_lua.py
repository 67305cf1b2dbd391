"""The Lua scripts as loaded: includes expanded, status codes shared with Python."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from aioq._transport.scripts import SCRIPTS, expand
from aioq._transport.types import CODES, Wrote, lua_codes

NAMES = sorted(
    p.name.removesuffix(".lua")
    for p in resources.files("aioq._transport").joinpath("lua").iterdir()
    if p.name.endswith(".lua")
)
CODE_NAMES = {f"{prefix}_{m.name}" for prefix, enum in CODES.items() for m in enum}


@pytest.mark.parametrize("name", NAMES)
def test_every_code_a_script_uses_is_defined_before_use(name: str) -> None:
    assert "#include" not in SCRIPTS[name].source  # every include expanded
    source = re.sub(r"--[^\n]*", "", SCRIPTS[name].source)  # code, not comments
    for code in sorted(CODE_NAMES):
        use = re.search(rf"(?<!local )\b{code}\b", source)
        if use is None:
            continue
        definition = source.find(f"local {code} = ")
        assert 0 <= definition < use.start(), f"{name}.lua uses {code} before defining it"


def test_codes_are_the_python_values() -> None:
    text = lua_codes()
    assert f"local WROTE_FENCED = {int(Wrote.FENCED)}" in text
    assert len(re.findall(r"^local ", text, re.MULTILINE)) == len(CODE_NAMES)


def test_no_script_returns_a_bare_status_code_table() -> None:
    """Status replies are named (`return {WROTE_FINAL}`), not `return {2}`."""
    bare = [n for n in NAMES if re.search(r"return \{[0-9]\}", SCRIPTS[n].source)]
    assert not bare


@pytest.mark.parametrize(("single", "batch"), [("start", "start_many"), ("finish", "complete")])
def test_the_batch_script_shares_the_single_one_s_body(single: str, batch: str) -> None:
    """start_many / complete run the very function start / finish run."""
    fn = {"start": "start_job", "finish": "finish_job"}[single]
    for name in (single, batch):
        assert f"local function {fn}(" in SCRIPTS[name].source
        assert SCRIPTS[name].source.count("redis.call('HSET'") <= 2


def test_unknown_include_is_an_error() -> None:
    with pytest.raises(LookupError):
        expand("-- #include nope.lua\n", {})
