"""`calltracker integration ...`: add and list integrations, see their outbox, retry it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.catalog import sites
from calltracker.cli.common import run_in_session
from calltracker.clock import utcnow
from calltracker.db.integration_models import Integration, OutboxRow
from calltracker.errors import Invalid
from calltracker.integrations import config, registry
from calltracker.integrations.base import STAGES
from calltracker.integrations.outbox import store
from calltracker.integrations.registry import KINDS
from calltracker.settings import Settings


def add_parser(sub: Any) -> None:
    """Register the `integration` command group on the CLI's subparsers."""
    group = sub.add_parser("integration", help="CRM and analytics integrations, and their outbox")
    actions = group.add_subparsers(dest="action", required=True)

    def run(command: Callable[[AsyncSession, argparse.Namespace], Awaitable[list[str]]]) -> Any:
        def handler(settings: Settings, args: argparse.Namespace) -> int:
            for line in run_in_session(settings, lambda s: command(s, args)):
                print(line)
            return 0

        return handler

    p = actions.add_parser("add", help="push a site's calls to a CRM, analytics or a webhook")
    p.add_argument("site", help="site key or id")
    p.add_argument("kind", choices=tuple(KINDS))
    p.add_argument("--name", required=True)
    p.add_argument(
        "--config-json",
        required=True,
        help="the adapter's config as a JSON object; - reads it from stdin (keeps secrets "
        "out of the shell history)",
    )
    p.add_argument("--trigger", choices=config.TRIGGERS, default="every")
    p.add_argument("--stage", choices=STAGES, default="hangup")
    p.add_argument("--disabled", action="store_true", help="add it switched off")
    p.set_defaults(func=run(cmd_add))

    p = actions.add_parser("list", help="integrations with their outbox counts")
    p.add_argument("--site", help="site key or id")
    p.set_defaults(func=run(cmd_list))

    p = actions.add_parser("status", help="pending, failed and dead rows, and the last errors")
    p.add_argument("id", type=int, nargs="?")
    p.set_defaults(func=run(cmd_status))

    p = actions.add_parser("retry", help="send failed rows again now")
    p.add_argument("id", type=int)
    p.add_argument("--dead", action="store_true", help="dead rows too")
    p.set_defaults(func=run(cmd_retry))


def read_config(raw: str) -> Any:
    text = sys.stdin.read() if raw == "-" else raw
    try:
        return json.loads(text)
    except ValueError as err:
        # The position only: the text may be a secret.
        raise Invalid(f"--config-json is not valid JSON (line {_line(err)})") from None


def _line(err: ValueError) -> int:
    return getattr(err, "lineno", 0)


async def cmd_add(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    site = await sites.get_site(session, args.site)
    integration = await config.create_integration(
        session,
        site_id=site.id,
        kind=args.kind,
        name=args.name,
        config=read_config(args.config_json),
        trigger=args.trigger,
        stage=args.stage,
        enabled=not args.disabled,
    )
    _, secrets_set = config.masked_config(integration.kind, integration.config)
    return [
        f"integration {integration.id} {integration.kind} {integration.name!r} for site "
        f"{site.key}: trigger {integration.trigger}, stage {integration.stage}, "
        f"{'enabled' if integration.enabled else 'disabled'}",
        f"  secrets set: {', '.join(secrets_set) or 'none'}",
    ]


async def cmd_list(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    site_id = (await sites.get_site(session, args.site)).id if args.site else None
    rows = await config.list_integrations(session, site_id)
    tally = await store.counts(session, [i.id for i in rows])
    lines = ["id\tsite\tkind\tname\ttrigger\tstage\tstate\tpending\tfailed\tdead"]
    for i in rows:
        c = tally.get(i.id, store.Counts())
        state = "enabled" if i.enabled else "disabled"
        lines.append(
            f"{i.id}\t{i.site_id}\t{i.kind}\t{i.name}\t{i.trigger}\t{i.stage}\t{state}\t"
            f"{c.pending}\t{c.failed}\t{c.dead}"
        )
    return lines


async def cmd_status(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    if args.id is not None:
        integrations: list[Integration] = [await config.get_integration(session, args.id)]
    else:
        integrations = list(await config.list_integrations(session))
    if not integrations:
        return ["no integrations"]
    tally = await store.counts(session, [i.id for i in integrations])
    lines: list[str] = []
    for i in integrations:
        c = tally.get(i.id, store.Counts())
        lines.append(
            f"integration {i.id} {i.kind} {i.name!r} (site {i.site_id}, "
            f"{'enabled' if i.enabled else 'disabled'})"
        )
        lines.append(
            f"  pending {c.pending}  sending {c.sending}  failed {c.failed} "
            f"(auth {c.auth_failed})  dead {c.dead}  done {c.done}"
        )
        if c.auth_failed:
            lines.append(
                "  ! authentication failed: fix the credentials "
                f"(PATCH /api/v1/integrations/{i.id}); those rows then go out again"
            )
        lines += [f"  ! {text}" for text in registry.warnings(i.kind, i.config, utcnow())]
        errors = await store.last_errors(session, i.id)
        if errors:
            lines.append("  last errors:")
            lines += [f"    {_error_line(row)}" for row in errors]
    return lines


def _error_line(row: OutboxRow) -> str:
    when = row.updated_at.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"row {row.id} call {row.call_id} {row.stage}: {row.state} after {row.attempts} "
        f"attempt(s), {when} UTC: {row.last_error}"
    )


async def cmd_retry(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    integration = await config.get_integration(session, args.id)
    count = await store.retry(session, integration.id, utcnow(), dead=args.dead)
    which = "failed and dead" if args.dead else "failed"
    # A running server picks them up at its next poll (a few seconds).
    return [f"{count} {which} row(s) of integration {integration.id} queued again"]
