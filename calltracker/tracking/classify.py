"""Classify a visit's traffic source from its landing URL and referrer."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlsplit

DIRECT: Final = "(direct)"
NONE: Final = "(none)"
NOT_SET: Final = "(not set)"
CPC: Final = "cpc"
ORGANIC: Final = "organic"
SOCIAL: Final = "social"
REFERRAL: Final = "referral"

# Matches the String(256) columns the labels are stored in.
MAX_FIELD_LEN: Final = 256


@dataclass(frozen=True)
class Source:
    """Where a visit came from, as marketers label it."""

    source: str
    medium: str
    campaign: str = ""
    keyword: str = ""
    content: str = ""
    click_id: str = ""
    click_id_type: str = ""

    @property
    def is_direct(self) -> bool:
        return self.source == DIRECT


DIRECT_SOURCE: Final = Source(DIRECT, NONE)

# Ad-platform click ids: parameter -> (source, medium). Tuple order is the precedence when a URL
# carries several. click_id_type is the parameter name itself, because offline-conversion uploads
# need it verbatim (Google takes gclid, gbraid and wbraid as three different fields).
_CLICK_IDS: Final[tuple[tuple[str, str, str], ...]] = (
    ("gclid", "google", CPC),
    ("gbraid", "google", CPC),
    ("wbraid", "google", CPC),
    ("yclid", "yandex", CPC),
    ("vkclid", "vk", CPC),
    ("rb_clid", "vk", CPC),  # VK Ads (ads.vk.com, ex-myTarget)
    ("msclkid", "bing", CPC),
    ("ttclid", "tiktok", CPC),
    # Meta appends fbclid to every outbound link, organic posts included, so it proves the visit
    # came from Facebook or Instagram but not that it was paid; paid Meta traffic carries utm tags.
    ("fbclid", "facebook", SOCIAL),
)
# Yandex's ysclid is deliberately absent: Yandex Search and Browser add it to organic links too.

_META_NETWORKS: Final = frozenset({"facebook", "instagram"})

# Exact hosts, so that mail.google.com or market.yandex.ru stay referrals.
_GOOGLE_HOST: Final = re.compile(r"google\.(?:com?\.)?[a-z]{2,3}")
_YANDEX_HOST: Final = re.compile(r"yandex\.(?:com?\.)?[a-z]{2,3}|ya\.ru")

# Domain -> (source, medium); a referrer matches its own host or any parent domain in here.
_KNOWN_DOMAINS: Final[Mapping[str, tuple[str, str]]] = {
    "bing.com": ("bing", ORGANIC),
    "go.mail.ru": ("mail.ru", ORGANIC),
    "duckduckgo.com": ("duckduckgo", ORGANIC),
    "search.yahoo.com": ("yahoo", ORGANIC),
    "search.yahoo.co.jp": ("yahoo", ORGANIC),
    "nova.rambler.ru": ("rambler", ORGANIC),
    "ecosia.org": ("ecosia", ORGANIC),
    "baidu.com": ("baidu", ORGANIC),
    "seznam.cz": ("seznam", ORGANIC),
    "search.naver.com": ("naver", ORGANIC),
    "search.brave.com": ("brave", ORGANIC),
    "vk.com": ("vk", SOCIAL),
    "vk.ru": ("vk", SOCIAL),
    "ok.ru": ("ok", SOCIAL),
    "t.me": ("telegram", SOCIAL),
    "telegram.me": ("telegram", SOCIAL),
    "telegram.org": ("telegram", SOCIAL),
    "facebook.com": ("facebook", SOCIAL),
    "fb.com": ("facebook", SOCIAL),
    "instagram.com": ("instagram", SOCIAL),
    "twitter.com": ("twitter", SOCIAL),
    "x.com": ("twitter", SOCIAL),
    "t.co": ("twitter", SOCIAL),
    "linkedin.com": ("linkedin", SOCIAL),
    "lnkd.in": ("linkedin", SOCIAL),
    "youtube.com": ("youtube", SOCIAL),
    "youtu.be": ("youtube", SOCIAL),
    "dzen.ru": ("dzen", SOCIAL),
    "zen.yandex.ru": ("dzen", SOCIAL),
    "pinterest.com": ("pinterest", SOCIAL),
    "pinterest.ru": ("pinterest", SOCIAL),
    "pin.it": ("pinterest", SOCIAL),
    "tiktok.com": ("tiktok", SOCIAL),
    "reddit.com": ("reddit", SOCIAL),
    "wa.me": ("whatsapp", SOCIAL),
    "whatsapp.com": ("whatsapp", SOCIAL),
}

# Query parameters that carry the search phrase, for the engines that still leak it.
_KEYWORD_PARAMS: Final[Mapping[str, tuple[str, ...]]] = {
    "google": ("q",),
    "yandex": ("text",),
    "bing": ("q",),
    "mail.ru": ("q",),
    "duckduckgo": ("q",),
    "yahoo": ("p",),
    "rambler": ("query",),
    "ecosia": ("q",),
    "baidu": ("wd", "word"),
    "seznam": ("q",),
    "naver": ("query",),
    "brave": ("q",),
}

# A macro the ad platform left unsubstituted ({keyword} in a Yandex Direct preview, VK's
# {{campaign_id}}) is template text, not a label.
_MACRO: Final = re.compile(r"\{+[\w.:-]*\}+")
# Anything else in a "host" means the referrer was junk.
_VALID_HOST: Final = re.compile(r"[\w.:-]+")


def classify(url: str, referrer: str | None, own_hosts: Collection[str] = ()) -> Source:
    """Label a visit from its landing URL, its referrer and the site's own domains."""
    params = _query(url)
    # The landing page's own host always counts as own: that referrer is internal navigation.
    ref = _classify_referrer(_host(referrer), [_host(url), *own_hosts])
    click = next(((p, s, m) for p, s, m in _CLICK_IDS if params.get(p)), None)
    utm_source = params.get("utm_source", "").lower()
    utm_medium = params.get("utm_medium", "").lower()

    if utm_source:
        source = utm_source
        medium = utm_medium or (click[2] if click else NOT_SET)
    elif click:
        _, source, medium = click
        if click[0] == "fbclid" and ref.source in _META_NETWORKS:
            source = ref.source
    elif utm_medium:
        source, medium = (NOT_SET if ref.is_direct else ref.source), utm_medium
    else:
        source, medium = ref.source, ref.medium

    keyword = params.get("utm_term", "")
    if not keyword and ref.medium == ORGANIC and source == ref.source:
        keyword = _search_keyword(referrer or "", ref.source)
    return Source(
        source=_cap(source),
        medium=_cap(medium),
        campaign=_cap(params.get("utm_campaign", "")),
        keyword=_cap(keyword),
        content=_cap(params.get("utm_content", "")),
        click_id=_cap(params[click[0]]) if click else "",
        click_id_type=click[0] if click else "",
    )


def _classify_referrer(host: str, own_hosts: Collection[str]) -> Source:
    if not host or _is_own(host, own_hosts):
        return DIRECT_SOURCE
    bare = host.removeprefix("www.")
    if _GOOGLE_HOST.fullmatch(bare):
        return Source("google", ORGANIC)
    if _YANDEX_HOST.fullmatch(bare):
        return Source("yandex", ORGANIC)
    labels = bare.split(".")
    for i in range(len(labels) - 1):
        known = _KNOWN_DOMAINS.get(".".join(labels[i:]))
        if known:
            return Source(*known)
    return Source(bare, REFERRAL)


def _is_own(host: str, own_hosts: Collection[str]) -> bool:
    bare = host.removeprefix("www.")
    for own in own_hosts:
        own = own.strip().lower().rstrip(".").removeprefix("www.")
        if bare == own or bare.endswith("." + own):
            return True
    return False


def _query(url: str | None) -> dict[str, str]:
    """The URL's query parameters, keys lowercased, first non-empty value of each."""
    try:
        query = urlsplit(url or "").query
    except ValueError:
        return {}
    params: dict[str, str] = {}
    # parse_qsl decodes '+' as a space and %-escapes as UTF-8; "replace" keeps broken escapes
    # from raising.
    for key, raw in parse_qsl(query, keep_blank_values=True, errors="replace"):
        value = raw.strip()
        if _MACRO.fullmatch(value):
            value = ""
        key = key.strip().lower()
        if not params.get(key):
            params[key] = value
    return params


def _host(url: str | None) -> str:
    try:
        host = urlsplit((url or "").strip()).hostname or ""
    except ValueError:  # e.g. an unbalanced "[" in the netloc
        return ""
    host = host.rstrip(".")
    return host if _VALID_HOST.fullmatch(host) else ""


def _search_keyword(referrer: str, engine: str) -> str:
    params = _query(referrer)
    return next((params[p] for p in _KEYWORD_PARAMS.get(engine, ()) if params.get(p)), "")


def _cap(value: str) -> str:
    return value[:MAX_FIELD_LEN]
