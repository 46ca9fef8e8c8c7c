"""Push: new and updated incidents delivered to webhooks (Logic Apps HTTP Webhook triggers,
custom-connector triggers, Power Automate), off the ingestion path.

How a change travels (docs/push.md says why each step is the way it is):

1. Ingestion (``shared.usecases.ingest``) hands each answer's versions that are not stored yet to
the
   ``notify`` hook *before* it stores them. The hook is ``outbox.Outbox``: it writes them, in
   messages under 64 KB, to the ``defender-push`` queue and returns. A version reaches the
   incident table only after its message exists, so a crash anywhere loses nothing (the table
   is what makes a version "already seen").
2. The queue-triggered ``delivery.PushWorker`` fans a change message out to one delivery
   message per matching subscription, then sends each delivery: a signed POST with a time cap,
   to the very address it checked (``target`` + ``transport``). Failures go back on the queue
   with backoff (``Retry-After`` honoured on 429 and 503), a circuit breaker per subscription
   stops hammering a receiver that is down, and what keeps failing lands in the
   ``defender-push-deadletter`` container, from where ``subscriptions redrive`` puts it back.
3. Subscriptions (``store``) keep their callback URL sealed (AES-GCM, key derived from
   ``API_SIGNING_KEY``), found again by a keyed hash; subscribing twice with one URL gives the
   same subscription.

Modules: ``target`` (the one URL parser and address policy, pure), ``keys`` (derivations,
sealing, signatures), ``messages`` (queue message shapes and the delivery decision, pure),
``store`` (subscriptions and loop-protection marks), ``outbox`` (the ingestion hook),
``transport`` (one HTTPS POST to a pinned address), ``delivery`` (the worker).
"""
