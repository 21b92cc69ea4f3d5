"""asterisk_conf/README.md against the real PBX: its checks hold, its steps name real tests."""

from __future__ import annotations

import ast
import re

from .conftest import HERE, Tracker
from .pbx import CONF, TRUNK_ADDRESS, Pbx

README = CONF / "README.md"
# What each command of the README's "Checking" must show on a PBX running these files
# with calltracker connected. The trunk cannot register here (no provider): only listed.
SHOWS = {
    "manager show settings": [re.compile(r"Timestamp events:\s+Yes")],
    "manager show user calltracker": [re.compile(r"read perm: system,call,agent,cdr,dialplan")],
    "manager show connected": [re.compile(r"calltracker")],
    "dialplan show from-trunk": [re.compile(r"AGI\(agi://\$\{CALLTRACKER_HOST\}")],
    "pjsip show registrations": [re.compile(r"zadarma-reg")],
    "pjsip show identifies": [
        re.compile(r"zadarma-identify"),
        re.compile(re.escape(TRUNK_ADDRESS)),
    ],
    "queue show support": [re.compile(r"PJSIP/101.*Not in use")],
    "module show like cdr_manager": [re.compile(r"cdr_manager\.so.*Running")],
    "module show like cdr_custom": [re.compile(r"cdr_custom\.so.*Running")],
}


def checking_commands() -> list[str]:
    text = README.read_text()
    block = text.split("## Checking", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return re.findall(r'asterisk -rx "([^"]+)"', block)


async def test_the_checking_commands_show_what_this_readme_says(pbx: Pbx, tracker: Tracker) -> None:
    commands = checking_commands()
    assert commands and set(commands) == set(SHOWS), "README's Checking and SHOWS differ"
    for command in commands:
        out = pbx.cli(command)
        for pattern in SHOWS[command]:
            assert pattern.search(out), f"{command!r} shows no {pattern.pattern!r}:\n{out}"


def test_every_test_the_walkthrough_names_exists() -> None:
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", README.read_text())
    assert len(named) >= 6
    for module, test in named:
        tree = ast.parse((HERE / module).read_text())
        tests = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        assert test in tests, f"asterisk_conf/README.md names {module}::{test}, which is gone"
