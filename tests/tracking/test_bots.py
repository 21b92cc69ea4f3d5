"""Tests for crawler and script detection by User-Agent."""

from __future__ import annotations

import pytest

from calltracker.tracking.bots import is_bot

BOTS = {
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "googlebot-smartphone": (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/126.0.6478.126 Mobile Safari/537.36 "
        "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    ),
    "adsbot-google": "AdsBot-Google (+http://www.google.com/adsbot.html)",
    "adsbot-google-mobile": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 14_7_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/14.1.2 Mobile/15E148 Safari/604.1 "
        "(compatible; AdsBot-Google-Mobile; +http://www.google.com/mobile/adsbot.html)"
    ),
    "mediapartners": "Mediapartners-Google",
    "google-inspectiontool": ("Mozilla/5.0 (compatible; Google-InspectionTool/1.0;)"),
    "yandexbot": "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "yandexmobilebot": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 15_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/15.4 Mobile/15E148 Safari/604.1 "
        "(compatible; YandexMobileBot/3.0; +http://yandex.com/bots)"
    ),
    "yandexmetrika": "Mozilla/5.0 (compatible; YandexMetrika/2.0; +http://yandex.com/bots yabs01)",
    "yandexdirect": "Mozilla/5.0 (compatible; YandexDirect/3.0)",
    "yandeximages": "Mozilla/5.0 (compatible; YandexImages/3.0)",
    "yandex-renderresources": "Mozilla/5.0 (compatible; YandexRenderResourcesBot/1.0)",
    "bingbot": (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
        "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36"
    ),
    "facebookexternalhit": (
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
    ),
    "twitterbot": "Twitterbot/1.0",
    "slurp": "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
    "baiduspider": "Mozilla/5.0 (compatible; Baiduspider/2.0)",
    "duckduckbot": "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "applebot": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1)"
    ),
    "mail.ru-bot": "Mozilla/5.0 (compatible; Linux x86_64; Mail.RU_Bot/2.0)",
    "vkshare": "Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)",
    "telegrambot": "TelegramBot (like TwitterBot)",
    "whatsapp-preview": "WhatsApp/2.23.20.0 A",
    "lighthouse": (
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/109.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse"
    ),
    "unknown-crawler-with-contact-url": "Mozilla/5.0 (compatible; FooIndexer/1.0; +https://foo.io)",
    "curl": "curl/8.4.0",
    "wget": "Wget/1.21.4",
    "python-requests": "python-requests/2.31.0",
    "python-urllib": "Python-urllib/3.11",
    "aiohttp": "Python/3.11 aiohttp/3.9.5",
    "httpx": "python-httpx/0.27.0",
    "go": "Go-http-client/2.0",
    "java": "Java/17.0.2",
    "node-fetch": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "axios": "axios/1.6.7",
    "scrapy": "Scrapy/2.11.0 (+https://scrapy.org)",
}

BROWSERS = {
    "chrome-windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36"
    ),
    "safari-iphone": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
    ),
    "firefox-linux": "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "yandex-browser": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 YaBrowser/24.6.0.0 Safari/537.36"
    ),
    "yandex-app": (
        "Mozilla/5.0 (Linux; arm_64; Android 13; SM-A525F) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.6367.179 YaApp_Android/24.55.1 "
        "YaSearchBrowser/24.55.1 BroPP/1.0 SA/3 Mobile Safari/537.36"
    ),
    "yandex-search-app-old": (
        "Mozilla/5.0 (Linux; Android 9; Redmi Note 7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/83.0.4103.106 YandexSearch/9.10 Mobile Safari/537.36"
    ),
    "samsung-internet": (
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 "
        "(KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36"
    ),
    "cubot-phone": (
        "Mozilla/5.0 (Linux; Android 11; Cubot X30) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.6478.71 Mobile Safari/537.36"
    ),
    "vk-in-app": (
        "Mozilla/5.0 (Linux; Android 12; M2101K6G Build/SKQ1.210908.001; wv) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/126.0.6478.71 "
        "Mobile Safari/537.36 VKAndroidApp/8.85-16331 (Android 12; SDK 31; arm64-v8a; "
        "Xiaomi M2101K6G; ru; 2400x1080)"
    ),
    "facebook-in-app": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0.38.108;FBBV/608339032]"
    ),
    "instagram-in-app": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148 Instagram 337.0.3.23.54 (iPhone14,5; iOS 17_5)"
    ),
    "headless-chrome-our-browser-tests": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/126.0.6478.126 Safari/537.36"
    ),
}


@pytest.mark.parametrize("user_agent", BOTS.values(), ids=BOTS.keys())
def test_crawlers_and_scripts_are_bots(user_agent: str) -> None:
    assert is_bot(user_agent)


@pytest.mark.parametrize("user_agent", BROWSERS.values(), ids=BROWSERS.keys())
def test_browsers_are_not_bots(user_agent: str) -> None:
    assert not is_bot(user_agent)


@pytest.mark.parametrize("user_agent", [None, "", "   "], ids=["none", "empty", "blank"])
def test_missing_user_agent_is_a_bot(user_agent: str | None) -> None:
    assert is_bot(user_agent)
