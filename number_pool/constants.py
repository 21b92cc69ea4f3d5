"""Redis key layout of the number pool: every key is <prefix><kind><id>."""

from __future__ import annotations

DEFAULT_PREFIX = "ct:pool:"

# Per pool; the id is the pool_id.
CONFIG = "cfg:"  # hash: hold, policy, clock, peak, exhausted
ORDER = "order:"  # hash: configured number -> its index in the config (breaks idle-time ties)
FRESH = "fresh:"  # zset: free numbers never leased, by index; idle since forever
FREE = "free:"  # zset: free numbers leased before, by the time their last holder let go
IDLE = "idle:"  # hash: number -> when its last holder let go; kept so a re-added number keeps it
EXPIRY = "expiry:"  # zset: visitor -> expires_at of their live lease
LEASE = "lease:"  # hash: visitor -> live lease json
VISIT = "visit:"  # hash: visit -> visitor, for renew()
HOLDERS = "holders:"  # hash: leased number -> json list of its visitors (several when shared)
BUSY = "busy:"  # zset: leased number -> latest last_seen of its holders, to pick whom to share

# Per number: calls are matched by number, whatever pool it was in at the time.
HISTORY = "hist:"  # zset: record id -> started_at
RECORD = "rec:"  # hash: record id -> record json

# One of each.
POOLS = "pools"  # set of pool ids, so expire() can walk every pool
SPANS = "spans"  # hash: number -> longest record, bounding how far back history() reads

# Name -> kind, as the Lua scripts see them (KIND.config, KIND.history, ...).
KINDS: dict[str, str] = {
    "config": CONFIG,
    "order": ORDER,
    "fresh": FRESH,
    "free": FREE,
    "idle": IDLE,
    "expiry": EXPIRY,
    "lease": LEASE,
    "visit": VISIT,
    "holders": HOLDERS,
    "busy": BUSY,
    "history": HISTORY,
    "record": RECORD,
    "pools": POOLS,
    "spans": SPANS,
}
