"""Translators: one module per client API / Bedrock API pair.

Translators are pure functions of bytes and dicts (no ext_proc protobufs, no
I/O), so they are tested with golden data and need no running gateway.
"""
