# syntax=docker/dockerfile:1
# Envoy for the gateway's ECS task and Kubernetes pod: the official image with
#   - envoy/envoy.yaml, the project's one bootstrap, copied unchanged;
#   - deploy/envoy/container.yaml, the listeners a container needs on top of it
#     (0.0.0.0:8081 for the load balancer, 0.0.0.0:9902 for /stats/prometheus);
#   - deploy/envoy/run-envoy.sh, which starts Envoy on both and turns SIGTERM
#     into a graceful drain (see deploy/README.md, "Rolling updates").
# Build from the repository root:
#   docker build -f docker/envoy.Dockerfile -t bedrock-gateway/envoy:0.1.0 .
FROM envoyproxy/envoy:v1.40.0

# The orchestrator probes the gateway itself (ALB target group and Kubernetes
# readiness on GET /health, liveness on GET :9902/ready); a Docker HEALTHCHECK
# would be ignored by both.
# checkov:skip=CKV_DOCKER_2: health is probed by the orchestrator (GET /health), see above

COPY --chmod=0444 envoy/envoy.yaml /etc/envoy/envoy.yaml
COPY --chmod=0444 deploy/envoy/container.yaml /etc/envoy/container.yaml
COPY --chmod=0555 deploy/envoy/run-envoy.sh /usr/local/bin/run-envoy

# An unprivileged user (any uid works: the files above are world-readable);
# nothing is written at run time, so the root filesystem can be read-only.
USER 10101:10101
EXPOSE 8081 9902
ENTRYPOINT ["/usr/local/bin/run-envoy"]
