"""The gateway's ext_proc service: Envoy asks it what to do with each request."""
