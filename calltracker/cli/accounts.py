"""`calltracker token|user ...`: API tokens and console users."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.accounts import tokens, users
from calltracker.accounts.roles import Role
from calltracker.cli.common import print_table, run_in_session
from calltracker.errors import CalltrackerError
from calltracker.settings import Settings


def add_parser(sub: Any) -> None:
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    p = token.add_parser("create")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--name", required=True)
    p.set_defaults(func=cmd_token_create)
    token.add_parser("list").set_defaults(func=cmd_token_list)
    p = token.add_parser("revoke")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_token_revoke)

    user = sub.add_parser("user", help="console users").add_subparsers(dest="action", required=True)
    p = user.add_parser("add", help="add a user (asks for the password)")
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--extension", default="", help="an operator's phone extension")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_user_add)
    p = user.add_parser("passwd", help="set a user's password; ends their sessions")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_user_passwd)
    p = user.add_parser("token", help="create an API token that acts as the user")
    p.add_argument("username")
    p.add_argument("--name", required=True)
    p.set_defaults(func=cmd_user_token)
    user.add_parser("list").set_defaults(func=cmd_user_list)


def cmd_token_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> str:
        row, token = await tokens.create_token(session, name=args.name, role=args.role)
        return f"token {row.id} ({row.role}, {row.name}); shown once:\n{token}"

    print(run_in_session(settings, work))
    return 0


def cmd_token_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> list[str]:
        return [
            f"{t.id}\t{t.role}\t{t.name}\t{t.created_at:%Y-%m-%d}\t{'revoked' if t.revoked_at else ''}"
            for t in await tokens.list_tokens(session)
        ]

    print_table("id\trole\tname\tcreated\tstate", run_in_session(settings, work))
    return 0


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> bool:
        return await tokens.revoke_token(session, args.id)

    if not run_in_session(settings, work):
        print(f"no active token {args.id}", file=sys.stderr)
        return 1
    print(f"token {args.id} revoked")
    return 0


def read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated): from stdin, a prompt, or random when there is no terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if not sys.stdin.isatty():
        return users.generate_password(), True
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat it: "):
        raise CalltrackerError("the passwords differ")
    return first, False


def cmd_user_add(settings: Settings, args: argparse.Namespace) -> int:
    password, generated = read_password(args)

    async def work(session: AsyncSession) -> str:
        user = await users.create_user(
            session,
            username=args.username,
            role=args.role,
            password=password,
            extension=args.extension,
        )
        return f"user {user.id} {user.username} ({user.role})"

    print(run_in_session(settings, work))
    if generated:
        print(f"password (shown once): {password}")
    return 0


def cmd_user_passwd(settings: Settings, args: argparse.Namespace) -> int:
    password, generated = read_password(args)

    async def work(session: AsyncSession) -> str:
        user = await users.get_user(session, args.username)
        await users.set_password(session, user, password)
        return f"password of {user.username} changed; their sessions were ended"

    print(run_in_session(settings, work))
    if generated:
        print(f"password (shown once): {password}")
    return 0


def cmd_user_token(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> str:
        user = await users.get_user(session, args.username)
        row, token = await users.create_user_token(session, user.id, args.name)
        return f"token {row.id} ({row.role}, {row.name}); shown once:\n{token}"

    print(run_in_session(settings, work))
    return 0


def cmd_user_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> list[str]:
        return [
            f"{u.id}\t{u.username}\t{u.role}\t{u.extension}\t{'disabled' if u.disabled else ''}"
            for u in await users.list_users(session)
        ]

    print_table("id\tusername\trole\textension\tstate", run_in_session(settings, work))
    return 0
