"""asterisk_conf/ is well formed and agrees with what the listener and the tracker expect."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from calltracker.settings import AmiSettings, Settings
from calltracker.telephony import cdr
from calltracker.telephony.ami import LOGIN_EVENTS
from calltracker.telephony.calls import operator_extension

# The rules Asterisk's config parser applies, and the cross-references a typo would break,
# quickly and without a PBX; tests/asterisk/ runs these files in a real Asterisk.
CONF = Path(__file__).resolve().parents[2] / "asterisk_conf"

# Applications of stock Asterisk 18-22 that a sample dialplan may use.
KNOWN_APPS = {
    "AGI", "Answer", "Busy", "Congestion", "Dial", "ExecIf", "Gosub", "Goto", "GotoIf",
    "Hangup", "Log", "MixMonitor", "NoOp", "Playback", "Queue", "Return", "Ringing", "Set",
    "Verbose", "Wait",
}  # fmt: skip


@dataclass
class Section:
    name: str
    template: bool = False
    inherits: list[str] = field(default_factory=list)
    items: list[tuple[str, str, str]] = field(default_factory=list)  # key, op, value

    def get(self, key: str) -> list[str]:
        return [v for k, _, v in self.items if k == key]


def parse_conf(path: Path) -> list[Section]:
    """Asterisk's config syntax: [name](options), key = value / key => value, ; comments."""
    sections: list[Section] = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = re.sub(r"(?<!\\);.*", "", raw).strip()
        if not line:
            continue
        where = f"{path.name}:{lineno}"
        m = re.fullmatch(r"\[([^\]]+)\](?:\(([^)]*)\))?", line)
        if m:
            options = [o.strip() for o in (m.group(2) or "").split(",") if o.strip()]
            sections.append(Section(m.group(1), "!" in options, [o for o in options if o != "!"]))
            continue
        m = re.fullmatch(r"([\w.+\-]+)\s*(=>|=)\s*(.*)", line)
        assert m, f"{where}: not 'key = value': {raw!r}"
        assert sections, f"{where}: setting outside a section"
        sections[-1].items.append((m.group(1), m.group(2), m.group(3).strip()))
    return sections


def by_name(sections: list[Section]) -> dict[str, list[Section]]:
    out: dict[str, list[Section]] = {}
    for section in sections:
        out.setdefault(section.name, []).append(section)
    return out


def balanced(text: str) -> bool:
    stack = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in text:
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            if not stack or stack.pop() != pairs[char]:
                return False
    return not stack


@pytest.mark.parametrize(
    "name",
    [
        "manager.conf",
        "extensions.conf",
        "pjsip.conf",
        "queues.conf",
        "cdr.conf",
        "cdr_manager.conf",
        "cdr_custom.conf",
    ],
)
def test_conf_file_parses(name: str) -> None:
    sections = parse_conf(CONF / name)
    assert sections
    if name not in ("pjsip.conf", "cdr_custom.conf"):  # these begin with [general]
        assert sections[0].name == "general"


def test_manager_user_matches_the_listener() -> None:
    sections = by_name(parse_conf(CONF / "manager.conf"))
    general, user = sections["general"][0], sections[AmiSettings().username][0]
    assert general.get("enabled") == ["yes"] and general.get("timestampevents") == ["yes"]
    assert general.get("port") == [str(AmiSettings().port)]
    read = set(user.get("read")[0].split(","))
    assert set(LOGIN_EVENTS.split(",")) <= read
    assert user.get("write") == ["reporting"]  # CoreShowChannels and nothing more
    assert user.get("deny") == ["0.0.0.0/0.0.0.0"] and user.get("permit")
    assert int(user.get("writetimeout")[0]) >= 1000


def test_cdr_manager_maps_the_headers_the_tracker_reads() -> None:
    sections = by_name(parse_conf(CONF / "cdr_manager.conf"))
    assert sections["general"][0].get("enabled") == ["yes"]
    mapped = {v for _, _, v in sections["mappings"][0].items}
    assert {"TrackingNumber", "CallerNumber", "RecordingFile"} <= mapped
    calls = (Path(__file__).resolve().parents[2] / "calltracker/telephony/calls.py").read_text()
    assert '"RecordingFile"' in calls and '"CallerNumber"' in calls
    cdr = by_name(parse_conf(CONF / "cdr.conf"))["general"][0]
    assert (cdr.get("enable"), cdr.get("unanswered"), cdr.get("batch")) == (
        ["yes"],
        ["yes"],
        ["no"],
    )


@dataclass
class Extension:
    context: str
    name: str
    priorities: list[tuple[str, str, str]] = field(default_factory=list)  # label, app, args


def dialplan() -> dict[str, dict[str, Extension]]:
    contexts: dict[str, dict[str, Extension]] = {}
    for section in parse_conf(CONF / "extensions.conf"):
        if section.name in ("general", "globals"):
            continue
        exts = contexts.setdefault(section.name, {})
        current: Extension | None = None
        for key, op, value in section.items:
            assert op == "=>", f"[{section.name}] {key} must use =>"
            if key == "exten":
                name, priority, rest = value.split(",", 2)
                assert priority == "1", f"[{section.name}] {name} must start at priority 1"
                current = exts.setdefault(name, Extension(section.name, name))
            else:
                assert key == "same" and current is not None, f"[{section.name}] stray {key}"
                priority, rest = value.split(",", 1)
                assert re.fullmatch(r"n(\(\w+\))?", priority), priority
            label = re.fullmatch(r"(?:1|n)(?:\((\w+)\))?", priority)
            m = re.fullmatch(r"(\w+)\((.*)\)", rest)
            assert m, f"[{section.name}] {current.name}: not App(args): {rest}"
            assert balanced(rest), f"unbalanced brackets: {rest}"
            assert label is not None
            current.priorities.append((label.group(1) or "", m.group(1), m.group(2)))
    return contexts


def test_dialplan_uses_real_apps_and_resolves_every_jump() -> None:
    contexts = dialplan()
    for context, exts in contexts.items():
        for ext in exts.values():
            labels = {label for label, _, _ in ext.priorities if label}
            for _, app, args in ext.priorities:
                assert app in KNOWN_APPS, f"[{context}] {ext.name}: unknown app {app}"
                targets = []
                if app == "GotoIf":
                    condition, _, branches = args.partition("?")
                    assert condition.startswith("$[") and condition.endswith("]"), args
                    targets = [t for t in branches.split(":") if t]
                elif app == "Goto":
                    targets = [args]
                for target in targets:
                    parts = target.split(",")
                    if len(parts) == 1:
                        assert parts[0] in labels, f"[{context}] {ext.name}: no label {target}"
                    else:
                        assert parts[0] in contexts, f"[{context}] no context in {target}"


def test_inbound_context_runs_the_calltracker_hook_before_ringing() -> None:
    inbound = dialplan()[AmiSettings().inbound_context]
    apps = [app for _, app, _ in inbound["_X."].priorities]
    args = {app: a for _, app, a in inbound["_X."].priorities}
    assert apps.index("MixMonitor") < apps.index("AGI") < apps.index("Queue")
    assert apps.index("AGI") < apps.index("Dial")
    assert args["AGI"] == "agi://${CALLTRACKER_HOST}:${CALLTRACKER_AGI_PORT}/incoming"
    assert any("AGISTATUS" in a for _, app, a in inbound["_X."].priorities if app == "GotoIf")
    text = (CONF / "extensions.conf").read_text()
    assert f"CALLTRACKER_AGI_PORT = {Settings().agi_port}" in text
    assert "__CT_TRACKING_NUMBER" in text and "CDR(recording)" in text


def test_pjsip_references_resolve_and_operators_are_named_by_extension() -> None:
    sections = parse_conf(CONF / "pjsip.conf")
    templates = {s.name: s for s in sections if s.template}
    typed: dict[str, set[str]] = {}
    for s in sections:
        kinds = s.get("type") + [t for p in s.inherits for t in templates[p].get("type")]
        assert len(kinds) == 1, f"[{s.name}] needs exactly one type"
        if not s.template:
            typed.setdefault(kinds[0], set()).add(s.name)
    refs = {
        "auth": "auth", "outbound_auth": "auth", "aors": "aor", "transport": "transport",
        "endpoint": "endpoint",
    }  # fmt: skip
    for s in sections:
        for key, kind in refs.items():
            for value in s.get(key):
                assert value in typed[kind], f"[{s.name}] {key} = {value}: no such {kind}"
    trunk = [s for s in sections if s.get("context") == [AmiSettings().inbound_context]]
    assert trunk and trunk[0].name in typed["endpoint"]
    queue = by_name(parse_conf(CONF / "queues.conf"))["support"][0]
    for member in queue.get("member"):
        interface = member.split(",")[0]
        endpoint = interface.split("/", 1)[1]
        assert endpoint in typed["endpoint"]
        # What the listener will read back from the dialled channel's name.
        assert operator_extension(f"{interface}-0000001a", interface) == endpoint


def test_cdr_custom_writes_the_columns_import_cdr_reads_with_the_recording() -> None:
    (mappings,) = by_name(parse_conf(CONF / "cdr_custom.conf"))["mappings"]
    ((file, _, template),) = mappings.items
    assert file == "calltracker.csv"
    columns = tuple(re.findall(r"\$\{CSV_QUOTE\(\$\{CDR\((\w+)\)\}\)\}", template))
    assert template.count("CSV_QUOTE") == len(columns)
    assert columns == cdr.MASTER_COLUMNS + cdr.NEW_COLUMNS + cdr.CUSTOM_COLUMNS
    assert "recording" in columns
