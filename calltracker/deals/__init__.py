"""Deals from the CRMs: what a deal is, how it finds its call, how it reaches the report.

CRM webhook ──▶ crm_fetch row ──▶ DealSync fetches the deal ─┐
CRM polling (backstop, one poller) ──────────────────────────┤
POST /api/v1/conversions ────────────────────────────────────┤
                                                             ▼
                   matching.decide (pure): own id > phone > tracking > window > utm
                                                             ▼
                   store.upsert: one row per deal, history of stages; a won deal with a
                   call queues one "won" outbox row per ad platform (Metrica, Google
                   Ads, GA4); the report's revenue and ROI read the deal table
"""
