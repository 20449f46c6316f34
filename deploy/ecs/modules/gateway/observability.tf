# Logs: one CloudWatch log group per container. The extproc's holds the usage
# records (one JSON line per request, "record": "usage"), Envoy's the access
# log (one JSON line per request, same request_id). Metrics: an Amazon Managed
# Service for Prometheus workspace, written by the collector sidecar of each task.

resource "aws_cloudwatch_log_group" "extproc" {
  name              = "/ecs/${var.name}/extproc"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.gateway.arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "envoy" {
  name              = "/ecs/${var.name}/envoy"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.gateway.arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "collector" {
  name              = "/ecs/${var.name}/metrics"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.gateway.arn
  tags              = local.tags
}

# Requests, tokens of each type and cost per consumer and model, read from the
# usage records, as CloudWatch metrics too (namespace BedrockGateway): alarms
# and chargeback queries without Prometheus.
locals {
  usage_metrics = {
    Requests         = { value = "1", unit = "Count" }
    InputTokens      = { value = "$.tokens.input", unit = "Count" }
    OutputTokens     = { value = "$.tokens.output", unit = "Count" }
    CacheReadTokens  = { value = "$.tokens.cache_read", unit = "Count" }
    CacheWriteTokens = { value = "$.tokens.cache_write", unit = "Count" }
    CostUSD          = { value = "$.cost_usd", unit = "None" }
  }
}

resource "aws_cloudwatch_log_metric_filter" "usage" {
  for_each       = local.usage_metrics
  name           = "${var.name}-${each.key}"
  log_group_name = aws_cloudwatch_log_group.extproc.name
  pattern        = "{ $.record = \"usage\" }"

  metric_transformation {
    name      = each.key
    namespace = "BedrockGateway"
    value     = each.value.value
    unit      = each.value.unit
    dimensions = {
      consumer = "$.consumer"
      model    = "$.model"
    }
  }
}

resource "aws_prometheus_workspace" "gateway" {
  count = var.enable_managed_prometheus ? 1 : 0
  alias = var.name
  tags  = local.tags
}
