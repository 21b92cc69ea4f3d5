"""Local HTTP servers that play Yandex Direct, VK Ads and Google Ads and enforce their documented contracts (docs/adspend.md)."""
