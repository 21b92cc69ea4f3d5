"""Recognise crawlers and scripted HTTP clients by their User-Agent."""

from __future__ import annotations

import functools
import re
from typing import Final

# No bare "bot" catch-all: it would flag real phones such as "Cubot X30". HeadlessChrome is
# deliberately absent too: our own browser tests drive headless Chromium against the widget.
_BOT_UA: Final = re.compile(
    r"""
    googlebot | adsbot-google | mediapartners-google | feedfetcher-google | storebot-google
    | google-inspectiontool | googleother | google-read-aloud | chrome-lighthouse
    | yandex\.com/bots  # every Yandex robot links its docs; the names below cover the rest
    | yandex\w*bot | yandex(?:images|metrika|direct|video|media|webmaster|pagechecker|favicons)
    | yadirectfetcher
    | bingbot | bingpreview | msnbot | adidxbot
    | facebookexternalhit | facebookcatalog | meta-externalagent
    | twitterbot | linkedinbot | pinterestbot | telegrambot | vkshare | whatsapp/ | slackbot
    | discordbot | skypeuripreview
    | yahoo!\ slurp | baiduspider | duckduckbot | applebot | mail\.ru_bot | seznambot | petalbot
    | semrushbot | ahrefsbot | mj12bot | dotbot | bytespider | gptbot | claudebot | ccbot
    | \+https?://  # the "+http://example.com/bot.html" contact URL that browsers never send
    | \b(?:crawler|spider)\b
    | \bcurl/ | \bwget/ | python-requests | python-urllib | python-httpx | \baiohttp/
    | go-http-client | \bjava/ | apache-httpclient | libwww-perl | \bscrapy | node-fetch
    | \baxios/
    """,
    re.IGNORECASE | re.VERBOSE,
)


@functools.lru_cache(maxsize=4096)  # the same few UAs repeat; the regex is long
def is_bot(user_agent: str | None) -> bool:
    """Whether the User-Agent is a crawler or a script rather than a person's browser."""
    if not user_agent or not user_agent.strip():
        # The widget runs in a browser, and every browser sends a User-Agent; a request
        # without one was made by a script.
        return True
    return _BOT_UA.search(user_agent) is not None
