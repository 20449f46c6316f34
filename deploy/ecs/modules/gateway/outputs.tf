output "alb_dns_name" {
  description = "DNS name of the ALB: point the gateway's DNS record (or alb_domain_name, with CloudFront) at it."
  value       = aws_lb.gateway.dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone ID of the ALB, for an alias record."
  value       = aws_lb.gateway.zone_id
}

output "cloudfront_domain_name" {
  description = "Domain name of the CloudFront distribution (null without CloudFront)."
  value       = try(aws_cloudfront_distribution.gateway[0].domain_name, null)
}

output "cluster_name" {
  description = "ECS cluster."
  value       = aws_ecs_cluster.gateway.name
}

output "service_name" {
  description = "ECS service (aws ecs update-service --force-new-deployment rolls it)."
  value       = aws_ecs_service.gateway.name
}

output "task_role_arn" {
  description = "Role the extproc calls Bedrock with."
  value       = aws_iam_role.task.arn
}

output "bedrock_policy_json" {
  description = "The task role's Bedrock policy (also usable for an EKS pod role)."
  value       = local.bedrock_policy_json
}

output "keys_secret_arn" {
  description = "Secrets Manager secret holding the keys file: put its value (deploy/README.md)."
  value       = local.keys_secret_arn
}

output "admin_token_secret_arn" {
  description = "Secrets Manager secret holding the admin API token."
  value       = aws_secretsmanager_secret.admin_token.arn
}

output "config_parameter_name" {
  description = "SSM parameter holding the gateway configuration."
  value       = aws_ssm_parameter.config.name
}

output "redis_primary_endpoint" {
  description = "ElastiCache primary endpoint (null without Redis)."
  value       = try(aws_elasticache_replication_group.limits[0].primary_endpoint_address, null)
}

output "log_groups" {
  description = "CloudWatch log groups: extproc (usage records), envoy (access log), metrics (collector)."
  value = {
    extproc = aws_cloudwatch_log_group.extproc.name
    envoy   = aws_cloudwatch_log_group.envoy.name
    metrics = aws_cloudwatch_log_group.collector.name
  }
}

output "prometheus_workspace" {
  description = "Amazon Managed Service for Prometheus workspace: query endpoint for Grafana (null when disabled)."
  value       = try(aws_prometheus_workspace.gateway[0].prometheus_endpoint, null)
}
