"""Every URL the server answers, in one place."""

from __future__ import annotations

from aiohttp import web

from calltracker.web import (
    adspend_api,
    catalog_api,
    console_routes,
    crm_hooks,
    deals,
    health,
    integrations_api,
    metrics,
    reports,
    widget_api,
    widget_js,
)
from calltracker.web.amp_api import amp_number


def setup_routes(app: web.Application) -> None:
    r = app.router
    # Public: the widget's visit API and health.
    r.add_get("/healthz", health.healthz)
    r.add_get("/metrics", metrics.metrics)  # private: an admin token (Prometheus bearer)
    r.add_post("/api/v1/visits", widget_api.create_visit)
    r.add_post("/api/v1/visits/{visit_id}/ping", widget_api.ping_visit)
    r.add_post("/api/v1/visits/{visit_id}/events", widget_api.visit_event)
    r.add_route("OPTIONS", "/api/v1/visits", widget_api.preflight)
    r.add_route("OPTIONS", "/api/v1/visits/{visit_id}/ping", widget_api.preflight)
    r.add_route("OPTIONS", "/api/v1/visits/{visit_id}/events", widget_api.preflight)
    r.add_get("/api/v1/amp/number", amp_number)  # amp-call-tracking, public, CORS of its own
    widget_js.add_widget_routes(app)  # GET /widget.js, cacheable, gzip
    r.add_get("/demo/", widget_js.demo_page)
    # Private: admin catalog.
    r.add_get("/api/v1/sites", catalog_api.list_sites)
    r.add_post("/api/v1/sites", catalog_api.create_site)
    r.add_get("/api/v1/sites/{site}", catalog_api.get_site)
    r.add_post("/api/v1/sites/{site}/pools", catalog_api.create_pool)
    r.add_post("/api/v1/sites/{site}/static-numbers", catalog_api.add_static_number)
    r.add_post("/api/v1/pools/{pool:\\d+}/numbers", catalog_api.add_pool_numbers)
    r.add_get("/api/v1/pools/{pool:\\d+}/stats", catalog_api.pool_stats)
    r.add_get("/api/v1/numbers", catalog_api.list_numbers)
    # Private: marketer reports, ad spend and conversions (calltracker/web/reports.py).
    reports.add_routes(app)
    # Private: ad accounts pulled from the ad platforms, unmapped spend, the campaign mapping
    # and currency rates (web/adspend_api.py).
    adspend_api.add_routes(app)
    # Private: the sales report and the deals (web/deals.py); public, each checked by its
    # CRM's own token: the CRMs' outgoing webhooks (web/crm_hooks.py).
    deals.add_routes(app)
    crm_hooks.add_routes(app)
    # Private: integrations and their outbox; public: signed recording links for CRMs
    # (web/integrations_api.py).
    integrations_api.add_routes(app)
    # Console: login, admin pages, users and tokens, calls, their JSON API, OpenAPI
    # (calltracker/web/console_routes.py).
    console_routes.add_routes(app)
