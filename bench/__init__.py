"""``make bench``: what the gateway costs on top of Envoy, measured against two baselines.

The same Anthropic ``/v1/messages`` request goes, in one run, through three
set-ups that share one Bedrock emulator, so the upstream work is identical:

(a) ``direct``  Envoy (envoy.yaml without its ext_proc filter) straight to the
    emulator; the client sends the already translated and signed InvokeModel.
(b) ``noop``    Envoy with envoy.yaml unchanged but for ports, its ext_proc a
    do-nothing gRPC service (:mod:`bench.noop_extproc`); same request as (a).
(c) ``gateway`` the real stack (:class:`devstack.Stack`); the client sends the
    Anthropic request with an API key.

(b) − (a) is the floor any Python ext_proc pays for four gRPC round trips per
request; (c) − (a) is what the gateway pays. Their ratio is the number we hold
ourselves to (target ≤ 1.3). Load comes from ``wrk``; see :mod:`bench.wrk`.
"""
