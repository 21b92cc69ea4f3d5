"""Every URL of the console and its JSON API: login, admin pages, users, calls, OpenAPI."""

from __future__ import annotations

from aiohttp import web

from calltracker.web import (
    admin,
    admin_api,
    admin_users,
    adspend_pages,
    calls_page,
    login,
    openapi,
    operator,
    recordings,
)

ID = r"{%s:\d+}"


def add_routes(app: web.Application) -> None:
    r = app.router
    # Public: the login form and the CSS/JS it needs.
    r.add_get("/login", login.login_form)
    r.add_post("/login", login.login)
    r.add_get("/static/{name}", login.static_file)
    # Every role: landing, logout, own account, calls.
    r.add_get("/", login.home)
    r.add_post("/logout", login.logout)
    r.add_get("/account", admin_users.account_page)
    r.add_post("/account/password", admin_users.change_password)
    r.add_post("/account/tokens", admin_users.create_own_token)
    r.add_post(f"/account/tokens/{ID % 'token'}/revoke", admin_users.revoke_own_token)
    r.add_get("/calls", calls_page.calls_page)
    # Operator (and admin): the console with live call cards, its websocket, and the old
    # /console address redirecting to it (calltracker/web/operator.py).
    operator.add_routes(app)
    # Admin pages.
    r.add_get("/admin/sites", admin.sites_page)
    r.add_post("/admin/sites", admin.create_site)
    r.add_get("/admin/sites/{site}", admin.site_page)
    r.add_post("/admin/sites/{site}", admin.update_site)
    r.add_post("/admin/sites/{site}/pools", admin.create_pool)
    r.add_get("/admin/pools", admin.pools_page)
    r.add_get(f"/admin/pools/{ID % 'pool'}", admin.pool_page)
    r.add_post(f"/admin/pools/{ID % 'pool'}", admin.update_pool)
    r.add_post(f"/admin/pools/{ID % 'pool'}/numbers", admin.add_pool_numbers)
    r.add_post(f"/admin/numbers/{ID % 'number'}/active", admin.set_number_active)
    r.add_get("/admin/static-numbers", admin.static_numbers_page)
    r.add_post("/admin/static-numbers", admin.add_static_number)
    r.add_get("/admin/numbers/import", admin.import_page)
    r.add_post("/admin/numbers/import", admin.import_numbers)
    r.add_get("/admin/integrations", admin.integrations_page)
    r.add_post("/admin/integrations", admin.create_integration)
    r.add_post(f"/admin/integrations/{ID % 'integration'}/retry", admin.retry_integration)
    r.add_post("/admin/ad-accounts", admin.create_ad_account)
    r.add_post(f"/admin/ad-accounts/{ID % 'account'}", admin.update_ad_account)
    r.add_post(f"/admin/ad-accounts/{ID % 'account'}/sync", admin.sync_ad_account)
    # Unmapped ad spend and the mapping (marketer), currency rates (admin).
    adspend_pages.add_routes(app)
    r.add_get("/admin/users", admin_users.users_page)
    r.add_post("/admin/users", admin_users.create_user)
    r.add_post(f"/admin/users/{ID % 'user'}", admin_users.update_user)
    r.add_post(f"/admin/users/{ID % 'user'}/password", admin_users.reset_password)
    r.add_post(f"/admin/users/{ID % 'user'}/tokens", admin_users.create_token_for_user)
    r.add_post(f"/admin/tokens/{ID % 'token'}/revoke", admin_users.revoke_token)
    # JSON API: every role.
    r.add_get("/api/v1/openapi.json", openapi.openapi_json)
    r.add_get("/api/v1/me", admin_api.get_me)
    r.add_get("/api/v1/me/tokens", admin_api.list_my_tokens)
    r.add_post("/api/v1/me/tokens", admin_api.create_my_token)
    r.add_delete(f"/api/v1/me/tokens/{ID % 'token'}", admin_api.revoke_my_token)
    r.add_post("/api/v1/me/password", admin_api.change_my_password)
    r.add_get("/api/v1/calls", admin_api.list_calls)
    r.add_get(f"/api/v1/calls/{ID % 'call'}", admin_api.get_call)
    r.add_get(f"/api/v1/calls/{ID % 'call'}/recording", recordings.call_recording)
    # Public, signed: the recording links the outbox sends to CRMs.
    r.add_get(recordings.SIGNED_ROUTE, recordings.signed_recording)
    # JSON API: admin.
    r.add_patch("/api/v1/sites/{site}", admin_api.update_site)
    r.add_get("/api/v1/pools", admin_api.list_pools)
    r.add_patch(f"/api/v1/pools/{ID % 'pool'}", admin_api.update_pool)
    r.add_patch(f"/api/v1/numbers/{ID % 'number'}", admin_api.update_number)
    r.add_post("/api/v1/numbers/import", admin_api.import_numbers)
    r.add_get("/api/v1/users", admin_api.list_users)
    r.add_post("/api/v1/users", admin_api.create_user)
    r.add_get(f"/api/v1/users/{ID % 'user'}", admin_api.get_user)
    r.add_patch(f"/api/v1/users/{ID % 'user'}", admin_api.update_user)
    r.add_post(f"/api/v1/users/{ID % 'user'}/tokens", admin_api.create_user_token)
    r.add_get("/api/v1/tokens", admin_api.list_tokens)
    r.add_delete(f"/api/v1/tokens/{ID % 'token'}", admin_api.revoke_token)
