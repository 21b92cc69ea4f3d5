"""A one-shot AMI client that logs in without events and sends one Originate."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os

from calltracker.errors import CalltrackerError
from calltracker.settings import AmiSettings
from calltracker.telephony.events import END, format_action, parse_block

_ids = itertools.count(1)


class AmiActionError(CalltrackerError):
    """Asterisk refused us, or could not be reached."""

    code = "ami_error"


def originate_action(
    *, did: str, caller: str, context: str, wait_seconds: int, action_id: str
) -> list[tuple[str, str]]:
    """The Originate of the lab traces (fixtures README): the ;2 half of the Local channel
    runs the inbound context with EXTEN = the DID, as a call from the trunk would."""
    return [
        ("Action", "Originate"),
        ("Channel", f"Local/{did}@{context}"),
        ("Application", "Wait"),
        ("Data", str(wait_seconds)),
        ("CallerID", f'"Caller" <{caller}>'),
        ("Timeout", "30000"),
        ("Async", "true"),
        ("ActionID", action_id),
    ]


async def originate(
    ami: AmiSettings, *, did: str, caller: str, wait_seconds: int = 60, timeout: float = 10.0
) -> dict[str, str]:
    """Send the Originate; returns Asterisk's response ("Originate successfully queued").

    `Events: off` at login: this connection only acts; the server's listener sees the call.
    """
    prefix = f"ct-simulate-{os.getpid()}"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(ami.host, ami.port)
    except (OSError, TimeoutError) as err:
        raise AmiActionError(f"cannot reach Asterisk at {ami.host}:{ami.port}: {err}") from None
    try:
        async with asyncio.timeout(timeout):
            banner = await reader.readline()
            if not banner.startswith(b"Asterisk Call Manager/"):
                raise AmiActionError(f"{ami.host}:{ami.port} is not an Asterisk manager")
            login_id = f"{prefix}-{next(_ids)}"
            writer.write(
                format_action(
                    [
                        ("Action", "Login"),
                        ("Username", ami.username),
                        ("Secret", ami.secret.reveal()),
                        ("Events", "off"),
                        ("ActionID", login_id),
                    ]
                )
            )
            login = await _response(reader, login_id)
            if login.get("Response") != "Success":
                raise AmiActionError(f"AMI login rejected: {login.get('Message', '')}")
            action_id = f"{prefix}-{next(_ids)}"
            writer.write(
                format_action(
                    originate_action(
                        did=did,
                        caller=caller,
                        context=ami.inbound_context,
                        wait_seconds=wait_seconds,
                        action_id=action_id,
                    )
                )
            )
            response = await _response(reader, action_id)
            if response.get("Response") != "Success":
                raise AmiActionError(f"Originate refused: {response.get('Message', '')}")
            writer.write(format_action([("Action", "Logoff"), ("ActionID", f"{prefix}-bye")]))
            await writer.drain()
            return response
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as err:
        raise AmiActionError(f"AMI at {ami.host}:{ami.port} stopped answering ({err!r})") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _response(reader: asyncio.StreamReader, action_id: str) -> dict[str, str]:
    """The response to our action; events (FullyBooted...) may come first and are skipped."""
    while True:
        block = parse_block((await reader.readuntil(END))[: -len(END)])
        if "Event" not in block and block.get("ActionID") == action_id:
            return block
