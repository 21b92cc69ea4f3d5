"""Tests for visit-source classification."""

from __future__ import annotations

import pytest

from calltracker.tracking.classify import MAX_FIELD_LEN, Source, classify

LANDING = "https://shop.example.ru/catalog/sofas/"
OWN = ("shop.example.ru",)


@pytest.mark.parametrize(
    ("url", "referrer", "expected"),
    [
        pytest.param(
            "https://shop.example.ru/?utm_source=yandex&utm_medium=cpc&utm_campaign=spring_sale"
            "&utm_term=%D0%BA%D1%83%D0%BF%D0%B8%D1%82%D1%8C+%D0%B4%D0%B8%D0%B2%D0%B0%D0%BD"
            "&yclid=5463248762937846271",
            "https://yandex.ru/",
            Source(
                "yandex",
                "cpc",
                campaign="spring_sale",
                keyword="купить диван",
                click_id="5463248762937846271",
                click_id_type="yclid",
            ),
            id="yandex-direct-utm-and-yclid",
        ),
        pytest.param(
            "https://shop.example.ru/?utm_source=Google&utm_medium=CPC"
            "&utm_campaign=%20Brand%20Search%20&utm_content=ad_v2&gclid=Cj0KCQiA-aK8BhCDARIsAL",
            "https://www.google.com/",
            Source(
                "google",
                "cpc",
                campaign="Brand Search",
                content="ad_v2",
                click_id="Cj0KCQiA-aK8BhCDARIsAL",
                click_id_type="gclid",
            ),
            id="utm-source-medium-lowercased-campaign-case-kept-and-stripped",
        ),
        pytest.param(
            "https://shop.example.ru/?utm_source=newsletter&utm_medium=email&gclid=Cj0KCQiA",
            "https://www.google.com/",
            Source("newsletter", "email", click_id="Cj0KCQiA", click_id_type="gclid"),
            id="utm-labels-win-over-click-id-which-is-still-recorded",
        ),
        pytest.param(
            "https://shop.example.ru/?utm_source=partner_site",
            None,
            Source("partner_site", "(not set)"),
            id="utm-source-without-medium",
        ),
        pytest.param(
            "https://shop.example.ru/?utm_source=yandex&yclid=5463248762937846271",
            None,
            Source("yandex", "cpc", click_id="5463248762937846271", click_id_type="yclid"),
            id="utm-source-without-medium-takes-click-id-medium",
        ),
        pytest.param(
            "https://shop.example.ru/?utm_medium=email&utm_campaign=march",
            "https://e.mail.ru/inbox/",
            Source("e.mail.ru", "email", campaign="march"),
            id="utm-medium-without-source-takes-referrer-host",
        ),
        pytest.param(
            "https://shop.example.ru/?utm_medium=email",
            None,
            Source("(not set)", "email"),
            id="utm-medium-without-source-or-referrer",
        ),
        pytest.param(
            "https://shop.example.ru/?utm_source=yandex&utm_medium=cpc&utm_term={keyword}",
            None,
            Source("yandex", "cpc"),
            id="unsubstituted-macro-is-dropped",
        ),
        pytest.param(
            "https://shop.example.ru/?utm_source=vk&utm_medium=cpc&utm_campaign=%7B%7Bcampaign_id%7D%7D",
            None,
            Source("vk", "cpc"),
            id="unsubstituted-vk-double-brace-macro-is-dropped",
        ),
        pytest.param(
            "https://shop.example.ru/?UTM_SOURCE=Yandex&utm_medium=cpc",
            None,
            Source("yandex", "cpc"),
            id="utm-keys-are-case-insensitive",
        ),
        pytest.param(
            "https://shop.example.ru/?utm_source=&utm_source=yandex&utm_source=google&utm_medium=cpc",
            None,
            Source("yandex", "cpc"),
            id="first-non-empty-repeated-parameter-wins",
        ),
        pytest.param(
            "https://shop.example.ru/?utm_source=google&utm_medium=cpc",
            "https://www.bing.com/search?q=sofa",
            Source("google", "cpc"),
            id="another-engines-search-phrase-is-not-the-keyword",
        ),
        pytest.param(
            "https://shop.example.ru/?yclid=5463248762937846271",
            "https://yandex.ru/",
            Source("yandex", "cpc", click_id="5463248762937846271", click_id_type="yclid"),
            id="yandex-direct-yclid-only",
        ),
        pytest.param(
            "https://shop.example.ru/?yclid=5463248762937846271",
            "https://yandex.ru/search/?text=%D0%B4%D0%B8%D0%B2%D0%B0%D0%BD&lr=213",
            Source(
                "yandex",
                "cpc",
                keyword="диван",
                click_id="5463248762937846271",
                click_id_type="yclid",
            ),
            id="yandex-direct-keyword-from-leaking-yandex-referrer",
        ),
        pytest.param(
            "https://shop.example.ru/?gclid=EAIaIQobChMI8dHx",
            "https://www.google.com/",
            Source("google", "cpc", click_id="EAIaIQobChMI8dHx", click_id_type="gclid"),
            id="google-ads-gclid-only",
        ),
        pytest.param(
            "https://shop.example.ru/?gbraid=0AAAAAoX7Y1",
            None,
            Source("google", "cpc", click_id="0AAAAAoX7Y1", click_id_type="gbraid"),
            id="google-ads-gbraid",
        ),
        pytest.param(
            "https://shop.example.ru/?wbraid=CjkKCQiA",
            None,
            Source("google", "cpc", click_id="CjkKCQiA", click_id_type="wbraid"),
            id="google-ads-wbraid",
        ),
        pytest.param(
            "https://shop.example.ru/?msclkid=5b4e5d6f7a8b9c0d",
            "https://www.bing.com/",
            Source("bing", "cpc", click_id="5b4e5d6f7a8b9c0d", click_id_type="msclkid"),
            id="microsoft-ads-msclkid",
        ),
        pytest.param(
            "https://shop.example.ru/?rb_clid=2283140917",
            "https://vk.com/",
            Source("vk", "cpc", click_id="2283140917", click_id_type="rb_clid"),
            id="vk-ads-rb-clid",
        ),
        pytest.param(
            "https://shop.example.ru/?vkclid=a7f1c2e3",
            None,
            Source("vk", "cpc", click_id="a7f1c2e3", click_id_type="vkclid"),
            id="vk-vkclid",
        ),
        pytest.param(
            "https://shop.example.ru/?fbclid=IwAR2F4-dbP0l7Mn1IawQQGCINEz",
            "https://l.facebook.com/",
            Source(
                "facebook",
                "social",
                click_id="IwAR2F4-dbP0l7Mn1IawQQGCINEz",
                click_id_type="fbclid",
            ),
            id="fbclid-is-social-not-paid",
        ),
        pytest.param(
            "https://shop.example.ru/?fbclid=PAZXh0bgNhZW0CMTEAAaZ",
            "https://l.instagram.com/",
            Source("instagram", "social", click_id="PAZXh0bgNhZW0CMTEAAaZ", click_id_type="fbclid"),
            id="fbclid-from-instagram-keeps-instagram",
        ),
        pytest.param(
            "https://shop.example.ru/?gclid=Cj0KCQiA&fbclid=IwAR2F4",
            None,
            Source("google", "cpc", click_id="Cj0KCQiA", click_id_type="gclid"),
            id="gclid-takes-precedence-over-fbclid",
        ),
        pytest.param(
            "https://shop.example.ru/?ysclid=lq2x9k3m4n123456789",
            "https://yandex.ru/",
            Source("yandex", "organic"),
            id="yandex-ysclid-is-not-an-ad-click",
        ),
        pytest.param(LANDING, None, Source("(direct)", "(none)"), id="no-referrer"),
        pytest.param(LANDING, "", Source("(direct)", "(none)"), id="empty-referrer"),
        pytest.param(
            LANDING,
            "https://shop.example.ru/catalog/",
            Source("(direct)", "(none)"),
            id="landing-host-referrer",
        ),
        pytest.param(
            "https://shop.example.ru/?utm_source=yandex&utm_medium=cpc",
            "https://shop.example.ru/catalog/",
            Source("yandex", "cpc"),
            id="utm-beats-own-referrer",
        ),
    ],
)
def test_classify_labels_the_visit(url: str, referrer: str | None, expected: Source) -> None:
    assert classify(url, referrer) == expected


@pytest.mark.parametrize(
    ("referrer", "source", "medium", "keyword"),
    [
        ("https://www.google.com/", "google", "organic", ""),
        ("https://www.google.co.uk/", "google", "organic", ""),
        ("https://www.google.com./", "google", "organic", ""),
        ("https://www.google.ru/", "google", "organic", ""),
        ("https://www.google.com.tr/", "google", "organic", ""),
        (
            "https://yandex.ru/search/?text=%D0%BA%D1%83%D0%BF%D0%B8%D1%82%D1%8C+%D0%B4%D0%B8%D0%B2"
            "%D0%B0%D0%BD&lr=213",
            "yandex",
            "organic",
            "купить диван",
        ),
        ("https://yandex.ru/", "yandex", "organic", ""),
        ("https://yandex.com/", "yandex", "organic", ""),
        ("https://yandex.kz/", "yandex", "organic", ""),
        ("https://yandex.by/", "yandex", "organic", ""),
        ("https://yandex.com.tr/", "yandex", "organic", ""),
        ("https://ya.ru/", "yandex", "organic", ""),
        (
            "https://go.mail.ru/search?q=%D0%B4%D0%B8%D0%B2%D0%B0%D0%BD",
            "mail.ru",
            "organic",
            "диван",
        ),
        (
            "https://www.bing.com/search?q=sofa+delivery&form=QBLH",
            "bing",
            "organic",
            "sofa delivery",
        ),
        ("https://duckduckgo.com/", "duckduckgo", "organic", ""),
        ("https://uk.search.yahoo.com/search?p=sofa", "yahoo", "organic", "sofa"),
        ("https://nova.rambler.ru/search?query=", "rambler", "organic", ""),
        ("https://www.ecosia.org/", "ecosia", "organic", ""),
        ("https://www.baidu.com/s?wd=sofa", "baidu", "organic", "sofa"),
        ("https://search.seznam.cz/", "seznam", "organic", ""),
        ("https://m.search.naver.com/", "naver", "organic", ""),
        ("https://vk.com/away.php?to=https%3A%2F%2Fshop.example.ru%2F&cc_key=", "vk", "social", ""),
        ("https://m.vk.com/", "vk", "social", ""),
        ("https://ok.ru/", "ok", "social", ""),
        ("https://t.me/", "telegram", "social", ""),
        ("https://web.telegram.org/", "telegram", "social", ""),
        ("https://www.facebook.com/", "facebook", "social", ""),
        ("https://l.facebook.com/", "facebook", "social", ""),
        ("https://www.instagram.com/", "instagram", "social", ""),
        ("https://twitter.com/", "twitter", "social", ""),
        ("https://x.com/", "twitter", "social", ""),
        ("https://t.co/", "twitter", "social", ""),
        ("https://www.linkedin.com/", "linkedin", "social", ""),
        ("https://www.youtube.com/", "youtube", "social", ""),
        ("https://dzen.ru/a/ZmR1", "dzen", "social", ""),
        ("https://zen.yandex.ru/media/", "dzen", "social", ""),
        ("https://www.pinterest.com/", "pinterest", "social", ""),
        ("https://www.tiktok.com/", "tiktok", "social", ""),
        ("https://old.reddit.com/r/sofas/", "reddit", "social", ""),
        ("https://www.forum.example.org/thread/1", "forum.example.org", "referral", ""),
        ("https://Blog.Example.ORG:8443/post", "blog.example.org", "referral", ""),
        # Only the search hosts themselves are search; other products of the same company refer.
        ("https://mail.google.com/mail/u/0/", "mail.google.com", "referral", ""),
        ("https://market.yandex.ru/product/123", "market.yandex.ru", "referral", ""),
        ("https://google.example.com/", "google.example.com", "referral", ""),
        ("https://notvk.com/", "notvk.com", "referral", ""),
    ],
)
def test_untagged_visit_is_labelled_by_its_referrer(
    referrer: str, source: str, medium: str, keyword: str
) -> None:
    assert classify(LANDING, referrer) == Source(source, medium, keyword=keyword)


@pytest.mark.parametrize(
    ("referrer", "own_hosts"),
    [
        pytest.param("https://blog.example.ru/post/1", ("example.ru",), id="subdomain-of-own"),
        pytest.param("https://www.example.ru/", ("example.ru",), id="www-of-own"),
        pytest.param("https://example.ru/", ("www.example.ru",), id="own-given-with-www"),
        pytest.param("https://pay.example.ru/", (" Example.RU. ",), id="own-given-untidy"),
        pytest.param("https://example.com/", ("example.ru", "example.com"), id="second-own"),
    ],
)
def test_referrer_from_own_hosts_is_direct(referrer: str, own_hosts: tuple[str, ...]) -> None:
    assert classify(LANDING, referrer, own_hosts).is_direct


def test_own_hosts_do_not_swallow_lookalike_domains() -> None:
    source = classify(LANDING, "https://notexample.ru/", ("example.ru",))

    assert source == Source("notexample.ru", "referral")


def test_own_hosts_do_not_match_an_empty_entry() -> None:
    source = classify(LANDING, "https://www.forum.example.org/", ("",))

    assert source == Source("forum.example.org", "referral")


@pytest.mark.parametrize(
    ("url", "referrer"),
    [
        pytest.param("ht!tp://", None, id="bad-scheme"),
        pytest.param("", None, id="empty-url"),
        pytest.param("", "", id="both-empty"),
        pytest.param(LANDING, "ht!tp://", id="bad-scheme-referrer"),
        pytest.param("https://[::1/?utm_source=x", "https://[broken/", id="unbalanced-ipv6"),
        pytest.param("\x00\x01\x02%ZZ", "\ud800", id="control-chars-and-lone-surrogate"),
        pytest.param(
            "https://shop.example.ru/?" + "&=%%&?#[" * 256,
            "https://" + '\\x"<>' * 400,
            id="2kb-junk",
        ),
    ],
)
def test_malformed_input_is_direct_rather_than_an_error(url: str, referrer: str | None) -> None:
    assert classify(url, referrer) == Source("(direct)", "(none)")


@pytest.mark.parametrize(
    "referrer",
    [
        pytest.param("ht!tp://", id="bad-scheme"),
        pytest.param("https://[broken/", id="unbalanced-ipv6"),
        pytest.param("https://" + '\\x"<>' * 400, id="junk-host"),
        pytest.param("yandex.ru", id="no-scheme"),
        pytest.param("about:blank", id="no-host"),
    ],
)
def test_unusable_referrer_counts_as_direct(referrer: str) -> None:
    assert classify(LANDING, referrer).is_direct


def test_unparsable_landing_url_still_uses_the_referrer() -> None:
    source = classify("https://[::1/?utm_source=x", "https://www.google.com/")

    assert source == Source("google", "organic")


def test_broken_percent_escape_is_replaced_not_raised() -> None:
    source = classify("https://shop.example.ru/?utm_source=x&utm_term=%D0%BA%D1%83%D0", None)

    assert source.keyword == "ку\ufffd"


def test_every_field_is_capped() -> None:
    long = "a" * 2000
    url = (
        f"https://shop.example.ru/?utm_source={long}&utm_medium={long}&utm_campaign={long}"
        f"&utm_term={long}&utm_content={long}&gclid={long}"
    )

    source = classify(url, None)

    capped = "a" * MAX_FIELD_LEN
    assert source == Source(capped, capped, capped, capped, capped, capped, "gclid")


def test_long_referral_host_is_capped() -> None:
    host = ".".join(["sub"] * 200) + ".example.org"

    source = classify(LANDING, f"https://{host}/")

    assert source.source == host[:MAX_FIELD_LEN]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(Source("(direct)", "(none)"), True, id="direct"),
        pytest.param(Source("google", "organic"), False, id="organic"),
        pytest.param(Source("(not set)", "email"), False, id="not-set"),
        pytest.param(Source("newsletter", "(none)"), False, id="tagged-medium-none"),
    ],
)
def test_is_direct(source: Source, expected: bool) -> None:
    assert source.is_direct is expected
