"""Ad spend pulled from the ad platforms' APIs: Yandex Direct, VK Ads, Google Ads.

base.py the connector interface; direct.py, vk.py, google.py the connectors; registry.py
the platform table; accounts.py the ad accounts per site (secrets never shown back);
mapping.py and sync.py the pure rules (labels, windows, replacement, retries); store.py the
SQL; service.py the rounds the server schedules and the CLI runs. docs/adspend.md.
"""
