"""Completion events and webhooks, driven by the jobs table's stream.

`events` (the EventBridge event of a finished job), `webhooks` (signing, verification and
delivery with retries), `processor` (one stream record → event + webhook).
"""
