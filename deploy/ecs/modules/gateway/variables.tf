# Inputs of the gateway module. Everything a platform engineer chooses is here;
# deploy/README.md explains each group.

variable "name" {
  description = "Name of the deployment: prefix of every resource (ALB and target group names allow 32 characters)."
  type        = string
  default     = "bedrock-gateway"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,26}$", var.name))
    error_message = "name: lowercase letters, digits and dashes, 2 to 27 characters, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

# --- network ------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC to deploy into."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the load balancer (public ones for an internet-facing ALB), in at least two AZs."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Subnets of the tasks and of Redis, in at least two AZs. They need a route to Bedrock, ECR, Secrets Manager, SSM, CloudWatch Logs (and AMP): a NAT gateway or VPC endpoints."
  type        = list(string)
}

# --- load balancer and CloudFront ---------------------------------------------

variable "certificate_arn" {
  description = "ACM certificate of the ALB's HTTPS listener (same region as the ALB)."
  type        = string
}

variable "alb_internal" {
  description = "Make the ALB internal (reachable only from the VPC and connected networks)."
  type        = bool
  default     = false
}

variable "alb_ingress_cidrs" {
  description = "Client networks allowed to reach the ALB on 443. Ignored when CloudFront is enabled: then only CloudFront reaches the ALB."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "alb_idle_timeout" {
  description = "Seconds the ALB keeps a silent connection. Matches Envoy's 300 s stream idle timeout: a long non-streamed completion sends nothing until it is done."
  type        = number
  default     = 300
}

variable "alb_deletion_protection" {
  description = "Protect the ALB against deletion (turn off before `terraform destroy`)."
  type        = bool
  default     = true
}

variable "alb_access_logs_bucket" {
  description = "S3 bucket for ALB access logs (null: no access logs; Envoy's access log in CloudWatch has every request anyway)."
  type        = string
  default     = null
}

variable "alb_web_acl_arn" {
  description = "WAFv2 web ACL (regional) to attach to the ALB, or null."
  type        = string
  default     = null
}

variable "deregistration_delay" {
  description = "Seconds the ALB lets requests in flight finish on a task leaving the service, before ECS stops it. Bounds a streamed answer during a rolling update."
  type        = number
  default     = 120
}

variable "enable_cloudfront" {
  description = "Put a CloudFront distribution in front of the ALB (the ALB then accepts CloudFront only)."
  type        = bool
  default     = false
}

variable "alb_domain_name" {
  description = "With CloudFront: the DNS name CloudFront uses to reach the ALB over HTTPS. It must be covered by certificate_arn and resolve to the ALB (create the record from the alb_dns_name output)."
  type        = string
  default     = null
}

variable "cloudfront_aliases" {
  description = "With CloudFront: custom domain names of the distribution (need cloudfront_certificate_arn)."
  type        = list(string)
  default     = []
}

variable "cloudfront_certificate_arn" {
  description = "With CloudFront aliases: ACM certificate in us-east-1 covering them."
  type        = string
  default     = null
}

variable "cloudfront_web_acl_arn" {
  description = "With CloudFront: WAFv2 web ACL (scope CLOUDFRONT) to attach, or null."
  type        = string
  default     = null
}

variable "cloudfront_origin_read_timeout" {
  description = "With CloudFront: seconds CloudFront waits for the first byte and between bytes (60 without a quota increase, up to 180 with one). A non-streamed answer slower than this fails through CloudFront."
  type        = number
  default     = 60
}

variable "cloudfront_price_class" {
  description = "With CloudFront: PriceClass_100, PriceClass_200 or PriceClass_All."
  type        = string
  default     = "PriceClass_100"
}

# --- images and task size -----------------------------------------------------

variable "extproc_image" {
  description = "Image of the extproc (docker/extproc.Dockerfile), e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/bedrock-gateway/extproc:0.1.0."
  type        = string
}

variable "envoy_image" {
  description = "Image of Envoy with the gateway's bootstrap (docker/envoy.Dockerfile)."
  type        = string
}

variable "collector_image" {
  description = "AWS Distro for OpenTelemetry collector, the metrics sidecar (with enable_managed_prometheus). Pin the current release."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0"
}

variable "cpu" {
  description = "Task CPU units (1024 = 1 vCPU), shared by Envoy, the extproc and the collector."
  type        = number
  default     = 1024
}

variable "memory" {
  description = "Task memory (MiB), valid for the chosen cpu on Fargate."
  type        = number
  default     = 2048
}

variable "extproc_workers" {
  description = "extproc worker processes per task (EXTPROC_WORKERS): about one per vCPU of cpu; more than one needs Redis."
  type        = number
  default     = 1

  validation {
    condition     = var.extproc_workers >= 1 && var.extproc_workers <= 16
    error_message = "extproc_workers must be between 1 and 16."
  }
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64 (Graviton, about 20% cheaper); the images must be built for it."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "enable_execute_command" {
  description = "Allow ECS Exec into the tasks (for the admin API on 127.0.0.1:9465: `extproc usage`). ECS Exec needs a writable root filesystem, so the extproc's is then writable."
  type        = bool
  default     = false
}

# --- scaling --------------------------------------------------------------------

variable "min_count" {
  description = "Fewest tasks (also the count at creation). Two or more for availability across AZs."
  type        = number
  default     = 2
}

variable "max_count" {
  description = "Most tasks autoscaling may run."
  type        = number
  default     = 10

  validation {
    condition     = var.max_count >= 1
    error_message = "max_count must be at least 1."
  }
}

variable "cpu_target_percent" {
  description = "Target average CPU of the service; tasks are added above it."
  type        = number
  default     = 60
}

variable "requests_per_task_per_minute" {
  description = "Target ALB requests per task per minute; tasks are added above it. Most gateway time is spent waiting on Bedrock, so CPU alone scales late for long streams."
  type        = number
  default     = 600
}

# --- gateway configuration and secrets ------------------------------------------

variable "gateway_config_file" {
  description = "Path of the gateway configuration (YAML, see config/gateway.yaml). Stored in SSM Parameter Store; a change rolls the service. With Redis it must say `limits: {backend: redis}`."
  type        = string
}

variable "keys_secret_arn" {
  description = "Secrets Manager secret whose value is the keys file (YAML `consumer: key`). Null: the module creates an empty secret; put the value before the tasks can start (deploy/README.md)."
  type        = string
  default     = null
}

variable "keys_secret_kms_key_arn" {
  description = "KMS key of an existing keys_secret_arn, if it is not the AWS managed key (the task execution role is allowed to decrypt with it)."
  type        = string
  default     = null
}

variable "bedrock_region" {
  description = "Region of the Bedrock endpoint the gateway calls (default: the deployment's region)."
  type        = string
  default     = null
}

variable "bedrock_inference_profile_ids" {
  description = "Inference profiles the gateway may invoke (the bedrock_id of the config's catalogue entries that are profiles, e.g. us.anthropic.claude-haiku-4-5-20251001-v1:0)."
  type        = list(string)
  default     = []
}

variable "bedrock_foundation_model_ids" {
  description = "Foundation models the gateway may invoke and count tokens for (the config's base_id values, and bedrock_id values that are models)."
  type        = list(string)
}

variable "bedrock_model_regions" {
  description = "Regions a cross-region inference profile may route to (us.* profiles: us-east-1, us-east-2, us-west-2). Default: the Bedrock region only."
  type        = list(string)
  default     = []
}

variable "bedrock_guardrail_arns" {
  description = "Bedrock Guardrails the config attaches (guardrail_policies.*.bedrock_guardrail)."
  type        = list(string)
  default     = []
}

# --- limits (Redis) ---------------------------------------------------------------

variable "enable_redis" {
  description = "Create ElastiCache Redis for limits and usage totals. Required when more than one task may run (max_count > 1): counters must be shared."
  type        = bool
  default     = true
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_replicas" {
  description = "Replicas beside the primary, in other AZs: one replica is promoted automatically if the primary fails."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas >= 1 && var.redis_replicas <= 5
    error_message = "redis_replicas must be 1 to 5: automatic Multi-AZ failover needs at least one replica."
  }
}

variable "redis_engine_version" {
  description = "Redis engine version."
  type        = string
  default     = "7.1"
}

variable "redis_snapshot_retention_days" {
  description = "Days of daily Redis snapshots (usage totals for the admin API live there too)."
  type        = number
  default     = 7
}

# --- rolling updates ------------------------------------------------------------

variable "stop_timeout" {
  description = "Seconds ECS waits for each container to stop after SIGTERM (Fargate allows at most 120)."
  type        = number
  default     = 120

  validation {
    condition     = var.stop_timeout >= 30 && var.stop_timeout <= 120
    error_message = "stop_timeout must be between 30 and 120 seconds (Fargate's maximum)."
  }
}

variable "envoy_drain_seconds" {
  description = "After SIGTERM, Envoy keeps accepting connections this long while telling clients to reconnect elsewhere."
  type        = number
  default     = 10
}

# --- logs and metrics -------------------------------------------------------------

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (the extproc's holds the usage records)."
  type        = number
  default     = 365
}

variable "container_insights" {
  description = "CloudWatch Container Insights on the cluster: enabled, enhanced or disabled."
  type        = string
  default     = "enabled"
}

variable "enable_managed_prometheus" {
  description = "Create an Amazon Managed Service for Prometheus workspace and a collector sidecar that scrapes the extproc and Envoy in each task and writes to it."
  type        = bool
  default     = true
}
