"""Push delivery: the ingestion hook that records changes (``outbox``) and the worker that
delivers them (``delivery``); ``shared.push`` holds the webhook transport they use.
"""
