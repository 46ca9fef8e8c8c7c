"""The HTTP API: one framework-free definition per route (``shared.api.routes``), served by the
Functions HTTP triggers (``function_app.py``), ``python -m shared serve`` (``shared.api.wsgi``)
and described by the OpenAPI 2.0 document (``shared.api.openapi``).

Pure request/response types live in ``shared.api.http``; nothing here imports an SDK at import
time, so ``function_app.py`` can index the routes without building anything.
"""
