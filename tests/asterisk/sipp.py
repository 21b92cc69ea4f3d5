"""SIPp as the provider's trunk and as the operators' phones.

Phones: one SIPp per extension for the whole session, registered once to the PBX with the
credentials of asterisk_conf/pjsip.conf. What each phone does with a call is read from the
caller's number, so that one phone can treat concurrent calls differently:

    7 9 <101> <102> <103> ...    e.g. 79133000001: 101 answers, 102 and 103 ring silently

digit ANSWER picks up after PICKUP_MS of ringing, BUSY answers 486, anything else rings
until the call is cancelled. Every call rings every phone (ring-all queue and Dial).

The trunk: one SIPp per call from TRUNK_ADDRESS, its scenario written for what the caller
does and what the provider must get back (the final response is checked by SIPp itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .pbx import PBX_ADDRESS, TRUNK_ADDRESS, free_udp_port

SIPP = "sipp"
AUDIO = Path("/usr/share/sip-tester/g711a.pcap")  # 7 s of G.711 a-law, shipped with SIPp
ANSWER, BUSY, SILENT = "1", "2", "3"
PICKUP_MS = 1000
EXTENSIONS = ("101", "102", "103")
HOW_TO_GET = "install SIPp (Debian: apt-get install sip-tester; ensure-test-services.sh does)"


def sipp_binary() -> str | None:
    return shutil.which(SIPP)


def caller_for(behaviour: dict[str, str], serial: int) -> str:
    """A caller number telling each phone what to do (see the module's docstring)."""
    digits = "".join(behaviour.get(ext, SILENT) for ext in EXTENSIONS)
    return f"79{digits}{serial:06d}"


def _xml(name: str, body: str) -> str:
    return f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n{body}\n</scenario>\n'


def _reply(status: str, *, to_tag: bool = True, cseq: str = "[last_CSeq:]", extra: str = "") -> str:
    to = "[last_To:];tag=[pid]SIPpTag01[call_number]" if to_tag else "[last_To:]"
    return f"""  <send>
    <![CDATA[

      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      {to}
      [last_Call-ID:]
      {cseq}
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      {extra}Content-Length: 0

    ]]>
  </send>"""


SDP = """Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 0
      a=rtpmap:8 PCMA/8000
      a=rtpmap:0 PCMU/8000"""


def register_scenario(ext: str, password: str) -> str:
    """REGISTER with the endpoint's credentials, then stay up: calls come out of call."""
    request = f"""      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{ext}@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{ext}@[remote_ip]>
      Call-ID: [call_id]
      Contact: <sip:{ext}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Expires: 7200"""
    return _xml(
        f"register {ext}",
        f"""  <send retrans="500"><![CDATA[

{request}
      CSeq: 1 REGISTER
      Content-Length: 0

  ]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[

{request}
      CSeq: 2 REGISTER
      [authentication username={ext} password={password}]
      Content-Length: 0

  ]]></send>
  <recv response="200"/>
  <pause milliseconds="86400000"/>""",
    )


def phone_scenario(ext: str) -> str:
    position = EXTENSIONS.index(ext)
    before = "." * position
    ringing = _reply("180 Ringing")
    ok_invite = f"""  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$cseq] INVITE
      Contact: <sip:{ext}@[local_ip]:[local_port];transport=[transport]>
      {SDP}

    ]]>
  </send>"""
    ok_reinvite = f"""  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{ext}@[local_ip]:[local_port];transport=[transport]>
      {SDP}

    ]]>
  </send>"""
    return _xml(
        f"phone {ext}",
        f"""  <recv request="INVITE">
    <action>
      <ereg regexp="sip:\\+?79{before}{ANSWER}" search_in="hdr" header="From:" assign_to="answer"/>
      <ereg regexp="sip:\\+?79{before}{BUSY}" search_in="hdr" header="From:" assign_to="busy"/>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="cseq"/>
    </action>
  </recv>
  <nop test="busy" next="busy"/>
{ringing}
  <nop test="answer" next="answer"/>
  <recv request="CANCEL" next="cancelled"/>
  <label id="busy"/>
{_reply("486 Busy Here")}
  <recv request="ACK" next="end"/>
  <label id="answer"/>
  <recv request="CANCEL" timeout="{PICKUP_MS}" ontimeout="pickup" next="cancelled"/>
  <label id="pickup"/>
{ok_invite}
  <recv request="ACK"/>
  <label id="talk"/>
  <recv request="INVITE" optional="true" next="reinvite"/>
  <recv request="UPDATE" optional="true" next="update"/>
  <recv request="BYE"/>
{_reply("200 OK", to_tag=False)}
  <nop next="end"/>
  <label id="reinvite"/>
{ok_reinvite}
  <recv request="ACK" next="talk"/>
  <label id="update"/>
{_reply("200 OK", to_tag=False)}
  <nop next="talk"/>
  <label id="cancelled"/>
{_reply("200 OK")}
{_reply("487 Request Terminated", cseq="CSeq: [$cseq] INVITE")}
  <recv request="ACK"/>
  <label id="end"/>""",
    )


@dataclass(frozen=True)
class CallPlan:
    """What the caller does, and what the provider must receive."""

    did: str  # as the provider sends it: the request URI's user, digits without "+"
    caller: str
    name: str = "Ivan"
    talk_ms: int = 0  # answered: talk this long, then hang up
    final: int = 0  # not answered: the final response the provider must get (480, 486...)
    cancel_after_ms: int = 0  # hang up this long after the first ringing, before any answer

    def __post_init__(self) -> None:
        assert sum(bool(x) for x in (self.talk_ms, self.final, self.cancel_after_ms)) == 1


def trunk_scenario(plan: CallPlan) -> str:
    to = "To: <sip:[service]@[remote_ip]:[remote_port]>"
    invite = f"""  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "{plan.name}" <sip:{plan.caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      {to}
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{plan.caller}@[local_ip]:[local_port]>
      Max-Forwards: 70
      {SDP}

    ]]>
  </send>
  <recv response="100" optional="true"/>"""

    def ack(via: str) -> str:
        return f"""  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      {via}
      From: "{plan.name}" <sip:{plan.caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>"""

    if plan.talk_ms:
        body = f"""{invite}
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
{ack("Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]")}
  <nop>
    <action><exec play_pcap_audio="{AUDIO}"/></action>
  </nop>
  <pause milliseconds="{plan.talk_ms}"/>
  <label id="bye"/>
  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "{plan.name}" <sip:{plan.caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>"""
    elif plan.final:
        body = f"""{invite}
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="{plan.final}"/>
{ack("[last_Via:]")}"""
    else:
        body = f"""{invite}
  <recv response="180"/>
  <pause milliseconds="{plan.cancel_after_ms}"/>
  <send>
    <![CDATA[

      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "{plan.name}" <sip:{plan.caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      {to}
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" optional="true"/>
  <recv response="487"/>
{ack("[last_Via:]")}"""
    return _xml(f"trunk call to {plan.did}", body)


def _args(scenario: Path, address: str, port: int, media_port: int, log_dir: Path) -> list[str]:
    return [
        SIPP,
        "-sf",
        str(scenario),
        "-i",
        address,
        "-p",
        str(port),
        "-mp",
        str(media_port),
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(log_dir / f"{scenario.stem}.messages.log"),
        "-trace_err",
        "-error_file",
        str(log_dir / f"{scenario.stem}.errors.log"),
    ]


class TrunkCall:
    """One call from the provider: SIPp runs it from start to end on its own."""

    def __init__(self, plan: CallPlan, pbx_sip_port: int, workdir: Path, label: str) -> None:
        self.plan = plan
        self._dir = workdir
        self.scenario = workdir / f"trunk-{label}.xml"
        self.scenario.write_text(trunk_scenario(plan))
        port = free_udp_port(TRUNK_ADDRESS)
        media = free_udp_port(TRUNK_ADDRESS, span=4)
        self._args = [
            *_args(self.scenario, TRUNK_ADDRESS, port, media, workdir),
            f"{PBX_ADDRESS}:{pbx_sip_port}",
            "-s",
            plan.did,
            "-m",
            "1",
            "-timeout",
            "120s",
            "-timeout_error",
        ]
        self._process: asyncio.subprocess.Process | None = None
        self._output = workdir / f"trunk-{label}.out"

    async def start(self) -> TrunkCall:
        with self._output.open("wb") as out:
            self._process = await asyncio.create_subprocess_exec(
                *self._args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    async def finished(self, timeout: float = 60.0) -> None:
        """Until SIPp ends; fails with what SIPp saw unless every step went as planned."""
        assert self._process is not None
        try:
            code = await asyncio.wait_for(self._process.wait(), timeout)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
            message = f"the trunk call did not end in {timeout} s\n{self.report()}"
            raise AssertionError(message) from None
        assert code == 0, (
            f"the provider's side of the call went wrong (sipp {code})\n{self.report()}"
        )

    def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    def messages(self) -> str:
        path = self._dir / f"{self.scenario.stem}.messages.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def responses(self) -> list[str]:
        """The status lines the provider received, in order: "SIP/2.0 180 Ringing"..."""
        return re.findall(r"^(SIP/2\.0 \d{3} [^\r\n]*)", self.messages(), re.M)

    def report(self) -> str:
        errors = self._dir / f"{self.scenario.stem}.errors.log"
        tail = errors.read_text(errors="replace")[-2000:] if errors.exists() else ""
        out = self._output.read_text(errors="replace")[-1500:] if self._output.exists() else ""
        return (
            f"responses: {self.responses()}\nsipp errors:\n{tail}\nsipp output:\n{out}\n"
            f"messages:\n{self.messages()[-3000:]}"
        )


@dataclass
class Phone:
    extension: str
    port: int
    process: subprocess.Popen[bytes]
    messages: Path

    def invites(self) -> list[str]:
        """The From header of every call that rang this phone."""
        text = self.messages.read_text(errors="replace") if self.messages.exists() else ""
        blocks = re.split(r"^INVITE sip:", text, flags=re.M)[1:]
        return [m.group(1) for b in blocks if (m := re.search(r"^From: *(.*)$", b, re.M))]


class Phones:
    """The operators' phones 101..103, registered for the session."""

    def __init__(self, pbx_sip_port: int, passwords: dict[str, str], workdir: Path) -> None:
        self._sip = pbx_sip_port
        self._passwords = passwords
        self._dir = workdir
        self.phones: dict[str, Phone] = {}

    def start(self) -> None:
        # One SIPp per phone, from one port: it registers (rewrite_contact=yes makes the PBX
        # call the address a REGISTER came from) and answers the calls, which arrive
        # outside the REGISTER's dialog (-oocsf); -aa answers the PBX's qualify OPTIONS.
        for ext in EXTENSIONS:
            port = free_udp_port(PBX_ADDRESS)
            media = free_udp_port(PBX_ADDRESS, span=4)
            register = self._dir / f"register-{ext}.xml"
            register.write_text(register_scenario(ext, self._passwords[ext]))
            scenario = self._dir / f"phone-{ext}.xml"
            scenario.write_text(phone_scenario(ext))
            args = _args(register, PBX_ADDRESS, port, media, self._dir)
            with (self._dir / f"phone-{ext}.out").open("wb") as log:
                process = subprocess.Popen(
                    [*args, "-oocsf", str(scenario), "-aa", "-rtp_echo", "-m", "1"]
                    + [f"{PBX_ADDRESS}:{self._sip}"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            self.phones[ext] = Phone(
                ext, port, process, self._dir / f"{register.stem}.messages.log"
            )

    def stop(self) -> None:
        for phone in self.phones.values():
            phone.process.terminate()
        for phone in self.phones.values():
            try:
                phone.process.wait(10)
            except subprocess.TimeoutExpired:
                phone.process.kill()
                phone.process.wait()

    def alive(self) -> bool:
        return all(p.process.poll() is None for p in self.phones.values())
