"""The durable outbox: deliveries to CRMs and analytics, written with the call, sent with retries.

A row's life (``store`` holds the SQL, ``policy`` the decisions, ``worker`` the loop)::

    pending ──claim──▶ sending ──ok──────────────▶ done
       ▲                  │ ├──temporary error──▶ failed ──due again──▶ (claimed like pending)
       │                  │ │   (attempts < max)     │
       │                  │ ├──temporary error──▶ dead   (attempts = max)
       │                  │ ├──auth error───────▶ failed (long delay, attempt not counted;
       │                  │ │                             due at once when the config changes)
       │                  │ └──permanent error──▶ dead   (the remote's message kept)
       │                  └──lease runs out (the worker died mid-send)──▶ claimed again
       └──────── admin retry (failed, and dead with --dead) ────────────────┘

Delivery is at least once: a row may be sent again after a crash, so every adapter sends an
idempotency key or looks its own earlier lead up before adding one.
"""
