"""A domain module that breaks the rule: read by test_architecture.py, never imported."""

from aiohttp import web

HANDLER = web.Response
