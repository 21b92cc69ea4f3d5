"""Typed keys for everything the application and its requests hold (app.py fills them)."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from calltracker.accounts.roles import Principal
from calltracker.accounts.sessions import SessionInfo
from calltracker.accounts.throttle import LoginThrottle
from calltracker.accounts.tokens import TokenVerifier
from calltracker.adspend.service import SyncRunner, SyncSettings
from calltracker.catalog.cache import CatalogCache
from calltracker.catalog.service import CatalogService
from calltracker.db.engine import SessionMaker
from calltracker.deals.sync import DealSync, DealSyncSettings
from calltracker.integrations.outbox.settings import OutboxSettings
from calltracker.integrations.outbox.worker import OutboxWorkers
from calltracker.metrics import Metrics
from calltracker.operator.cards import CardMaker
from calltracker.operator.hub import OperatorHub
from calltracker.settings import Settings
from calltracker.telephony.agi import AgiServer
from calltracker.telephony.leader import LeadingListener
from calltracker.telephony.recorder import CallRecorder
from calltracker.tracking.ratelimit import RateLimiter
from calltracker.tracking.visits import VisitService
from number_pool import PoolBackend

settings_key = web.AppKey("settings_key", Settings)
engine_key = web.AppKey("engine_key", AsyncEngine)
sessionmaker_key = web.AppKey("sessionmaker_key", SessionMaker)
redis_key = web.AppKey("redis_key", Redis)
pools_key = web.AppKey("pools_key", PoolBackend)
catalog_key = web.AppKey("catalog_key", CatalogCache)
# Every edit of sites, pools and numbers: it refreshes catalog_key's snapshot.
catalog_service_key = web.AppKey("catalog_service_key", CatalogService)
visits_key = web.AppKey("visits_key", VisitService)
visit_limiter_key = web.AppKey("visit_limiter_key", RateLimiter)
login_throttle_key = web.AppKey("login_throttle_key", LoginThrottle)
token_verifier_key = web.AppKey("token_verifier_key", TokenVerifier)
# Who the request acts as (web/auth.py), and its login session when it has one.
principal_key = web.RequestKey("principal_key", Principal)
current_session_key = web.RequestKey("current_session_key", SessionInfo)
# Outgoing HTTP for every integration adapter, and the outbox delivery loops (integrations/outbox/).
http_key = web.AppKey("http_key", aiohttp.ClientSession)
outbox_settings_key = web.AppKey("outbox_settings_key", OutboxSettings)
outbox_key = web.AppKey("outbox_key", OutboxWorkers)
# Deals back from the CRMs (deals/sync.py): the webhooks' fetches and the polling backstop.
deal_sync_settings_key = web.AppKey("deal_sync_settings_key", DealSyncSettings)
deal_sync_key = web.AppKey("deal_sync_key", DealSync)
# Ad spend pulled from the ad platforms (adspend/): the rounds this process runs, and their
# settings (tests set a short tick).
adspend_settings_key = web.AppKey("adspend_settings_key", SyncSettings)
adspend_key = web.AppKey("adspend_key", SyncRunner)
# Calls: the recorder stores call facts; the listener exists only when AMI is configured.
recorder_key = web.AppKey("recorder_key", CallRecorder)
# The AMI listener of this process's term as leader (telephony/leader.py), if AMI is configured.
ami_key = web.AppKey("ami_key", LeadingListener)
# The FastAGI server, unless CALLTRACKER_AGI_PORT is off or its port could not be bound.
agi_key = web.AppKey("agi_key", AgiServer)
# The operators' live cards (operator/): the hub the consoles subscribe to, and their maker.
operator_hub_key = web.AppKey("operator_hub_key", OperatorHub)
card_maker_key = web.AppKey("card_maker_key", CardMaker)
# This process's Prometheus metrics (calltracker/metrics.py, served by web/metrics.py).
metrics_key = web.AppKey("metrics_key", Metrics)
