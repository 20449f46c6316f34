"""``make bench``: what the gateway costs on top of Envoy, measured against two baselines.

The same client requests go, in one run, through three set-ups that share one
Bedrock emulator, so the upstream work is identical:

(a) ``direct``  Envoy (envoy.yaml without its ext_proc filter) straight to the
    emulator; the client sends the already translated and signed Bedrock call.
(b) ``noop``    Envoy with envoy.yaml unchanged but for ports, its ext_proc a
    do-nothing gRPC service (:mod:`bench.noop_extproc`) that, like the
    gateway, switches event-stream answers to STREAMED; same request as (a).
(c) ``gateway`` the real stack (:class:`devstack.Stack`); the client sends the
    Anthropic or OpenAI request with an API key.

The requests (:mod:`bench.payload`): Anthropic ``/v1/messages`` (InvokeModel)
and OpenAI ``/v1/chat/completions`` (Converse), each non-streaming (latency
and throughput with ``wrk``, :mod:`bench.wrk`) and streaming (time to first
token, and CPU per 1,000 events of the ext_proc process and of Envoy, with a
small asyncio client, :mod:`bench.streaming` and :mod:`bench.cpu`).

(b) − (a) is the floor any Python ext_proc pays for its gRPC round trips; (c)
− (a) is what the gateway pays. Their ratio is the number we hold ourselves
to (target ≤ 1.3).

Guardrails, two more parts: what each guardrail policy costs per KB of
request in-process, no servers (:mod:`bench.guardcost` on the bodies of
:mod:`bench.guardtext`), and the latency the default policy adds, (c) against
a fourth set-up started only for it:

(d) ``unguarded`` the gateway again, with ``guardrail_policies.default``
    configured without detectors; the same Anthropic request as (c), with a
    1 KiB and a 32 KiB prompt, with ``wrk``.

Metering and limits (part ``metering``, in-process, no Envoy): the whole
decision path of one request without limits, with limits on the memory store
and on a real Redis, side by side; Redis round trips per request, memory per
consumer, and what a request leaves behind (:mod:`bench.metering`).
"""
