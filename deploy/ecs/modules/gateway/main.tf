# The gateway on ECS Fargate: one task = Envoy + the extproc sharing localhost
# (envoy/envoy.yaml reaches the extproc at 127.0.0.1:50051), behind an ALB
# (and optionally CloudFront), scaled out on CPU and request count, limits
# shared in ElastiCache Redis. deploy/README.md is the guide.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  region         = data.aws_region.current.region
  account_id     = data.aws_caller_identity.current.account_id
  partition      = data.aws_partition.current.partition
  bedrock_region = coalesce(var.bedrock_region, local.region)
  model_regions  = length(var.bedrock_model_regions) > 0 ? var.bedrock_model_regions : [local.bedrock_region]
  tags           = merge({ "app" = "bedrock-gateway", "deployment" = var.name }, var.tags)

  # The gateway configuration is read here so that a configuration that cannot
  # work with this deployment fails the plan, not the tasks (see the checks below).
  gateway_config  = file(var.gateway_config_file)
  config          = yamldecode(local.gateway_config)
  limits_backend  = try(local.config.limits.backend, "memory")
  config_sha256   = sha256(local.gateway_config)
  keys_secret_arn = var.keys_secret_arn != null ? var.keys_secret_arn : aws_secretsmanager_secret.keys[0].arn

  # Shutdown budget (rolling updates, scale-in): the ALB has already drained the
  # task for deregistration_delay seconds when ECS sends SIGTERM. ECS stops Envoy
  # first (it depends on the extproc, and dependencies reverse on shutdown), then
  # the extproc; each has stop_timeout seconds before SIGKILL.
  envoy_stop_timeout_seconds  = var.stop_timeout - 10
  extproc_drain_delay_seconds = 5
  extproc_grace_seconds       = var.stop_timeout - local.extproc_drain_delay_seconds - 10

  extproc_secrets = concat(
    [{ name = "GATEWAY_ADMIN_TOKEN", valueFrom = aws_secretsmanager_secret.admin_token.arn }],
    var.enable_redis ? [{ name = "GATEWAY_REDIS_URL", valueFrom = aws_secretsmanager_secret.redis_url[0].arn }] : [],
  )

  collector_config = templatefile("${path.module}/collector.yaml.tftpl", {
    region           = local.region
    remote_write_url = var.enable_managed_prometheus ? "${aws_prometheus_workspace.gateway[0].prometheus_endpoint}api/v1/remote_write" : ""
  })

  # Rendered from a JSON template so that tests/deploy renders the very same
  # definitions without Terraform and validates them against the ECS API.
  container_definitions = jsonencode([
    for container in jsondecode(templatefile("${path.module}/container_definitions.json.tftpl", {
      log_region                  = local.region
      bedrock_region              = local.bedrock_region
      extproc_image               = var.extproc_image
      extproc_read_only_root      = !var.enable_execute_command
      envoy_image                 = var.envoy_image
      collector_image             = var.collector_image
      config_parameter_arn        = aws_ssm_parameter.config.arn
      config_sha256               = local.config_sha256
      keys_secret_arn             = local.keys_secret_arn
      extproc_secrets             = local.extproc_secrets
      envoy_log_group             = aws_cloudwatch_log_group.envoy.name
      extproc_log_group           = aws_cloudwatch_log_group.extproc.name
      collector_log_group         = aws_cloudwatch_log_group.collector.name
      stop_timeout                = var.stop_timeout
      envoy_drain_seconds         = var.envoy_drain_seconds
      envoy_stop_timeout_seconds  = local.envoy_stop_timeout_seconds
      extproc_drain_delay_seconds = local.extproc_drain_delay_seconds
      extproc_grace_seconds       = local.extproc_grace_seconds
      extproc_workers             = var.extproc_workers
      collector_config            = local.collector_config
    })) : container if container.name != "metrics" || var.enable_managed_prometheus
  ])
}

resource "terraform_data" "checks" {
  input = local.limits_backend

  lifecycle {
    precondition {
      condition     = var.enable_redis || var.max_count == 1
      error_message = "More than one task (max_count > 1) needs shared limits: set enable_redis = true."
    }
    precondition {
      condition     = local.limits_backend == (var.enable_redis ? "redis" : "memory")
      error_message = "The gateway configuration's limits.backend must be \"redis\" when enable_redis is true, and \"memory\" when it is false."
    }
    precondition {
      condition     = var.extproc_workers == 1 || var.enable_redis
      error_message = "Several extproc workers share limits through Redis only: set enable_redis = true."
    }
    precondition {
      condition     = var.envoy_drain_seconds < local.envoy_stop_timeout_seconds
      error_message = "envoy_drain_seconds must be shorter than stop_timeout - 10."
    }
    precondition {
      condition     = !var.enable_cloudfront || var.alb_domain_name != null
      error_message = "CloudFront reaches the ALB over HTTPS by name: set alb_domain_name."
    }
  }
}

resource "aws_ecs_cluster" "gateway" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = var.container_insights
  }

  tags = local.tags
}

resource "aws_ecs_task_definition" "gateway" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = local.container_definitions

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Task-local (Fargate ephemeral storage, created root-owned): the
  # configuration and keys files that the gateway-files container writes for the
  # extproc, and the extproc's /tmp, which that container hands to uid 10001
  # (the --workers supervisor keeps its metrics there). Usage records go to
  # stdout (CloudWatch Logs), never to disk.
  volume {
    name = "gateway-files"
  }
  volume {
    name = "extproc-tmp"
  }

  tags = local.tags

  depends_on = [terraform_data.checks]
}

resource "aws_ecs_service" "gateway" {
  name                               = var.name
  cluster                            = aws_ecs_cluster.gateway.id
  task_definition                    = aws_ecs_task_definition.gateway.arn
  desired_count                      = var.min_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 60
  enable_execute_command             = var.enable_execute_command
  propagate_tags                     = "SERVICE"
  wait_for_steady_state              = false

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.gateway.arn
    container_name   = "envoy"
    container_port   = 8081
  }

  # Autoscaling owns the task count after creation.
  lifecycle {
    ignore_changes = [desired_count]
  }

  tags       = local.tags
  depends_on = [aws_lb_listener.https, aws_iam_role_policy.task_bedrock]
}
