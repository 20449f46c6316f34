output "gateway_url" {
  description = "Where clients point their SDKs (once DNS for the certificate's name points at the ALB)."
  value       = var.enable_cloudfront ? "https://${module.gateway.cloudfront_domain_name}" : "https://${module.gateway.alb_dns_name}"
}

output "alb_dns_name" {
  description = "ALB DNS name, for your DNS record."
  value       = module.gateway.alb_dns_name
}

output "keys_secret_arn" {
  description = "Put the keys file here: aws secretsmanager put-secret-value --secret-id ARN --secret-string file://keys.yaml"
  value       = module.gateway.keys_secret_arn
}

output "log_groups" {
  description = "CloudWatch log groups."
  value       = module.gateway.log_groups
}

output "prometheus_workspace" {
  description = "AMP workspace endpoint for Grafana."
  value       = module.gateway.prometheus_workspace
}
