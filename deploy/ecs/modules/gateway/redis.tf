# Shared limits: with more than one task, request and token windows, concurrency
# leases and budgets must be counted in one place (limits.backend: redis).
# TLS in transit and an AUTH token; the full URL (rediss://:token@host:6379/0)
# reaches the extproc as GATEWAY_REDIS_URL from Secrets Manager.

resource "aws_elasticache_subnet_group" "limits" {
  count      = var.enable_redis ? 1 : 0
  name       = "${var.name}-limits"
  subnet_ids = var.private_subnet_ids
  tags       = local.tags
}

resource "random_password" "redis" {
  count   = var.enable_redis ? 1 : 0
  length  = 48
  special = false
}

resource "aws_elasticache_replication_group" "limits" {
  count                      = var.enable_redis ? 1 : 0
  replication_group_id       = "${var.name}-limits"
  description                = "Bedrock gateway limits and usage totals"
  engine                     = "redis"
  engine_version             = var.redis_engine_version
  node_type                  = var.redis_node_type
  port                       = 6379
  num_cache_clusters         = 1 + var.redis_replicas
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.limits[0].name
  security_group_ids         = [aws_security_group.redis[0].id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.gateway.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis[0].result
  snapshot_retention_limit   = var.redis_snapshot_retention_days
  auto_minor_version_upgrade = true
  apply_immediately          = false
  tags                       = local.tags
}

resource "aws_secretsmanager_secret" "redis_url" {
  count       = var.enable_redis ? 1 : 0
  name_prefix = "${var.name}/redis-url-"
  description = "Bedrock gateway Redis URL with its AUTH token (GATEWAY_REDIS_URL)"
  kms_key_id  = aws_kms_key.gateway.arn
  tags        = local.tags
  # checkov:skip=CKV2_AWS_57:rotating the AUTH token means changing random_password.redis (terraform apply -replace), which rewrites this secret
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  count         = var.enable_redis ? 1 : 0
  secret_id     = aws_secretsmanager_secret.redis_url[0].id
  secret_string = "rediss://:${random_password.redis[0].result}@${aws_elasticache_replication_group.limits[0].primary_endpoint_address}:6379/0"
}
