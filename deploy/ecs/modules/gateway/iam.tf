# Two roles. The task role is what the extproc signs Bedrock calls with (the
# standard credential chain finds it through the ECS container credentials
# endpoint); it may invoke only the configured models and inference profiles.
# The execution role is what ECS itself uses to pull images, write logs and
# read the secrets and the configuration parameter into the containers.

locals {
  inference_profile_arns = [
    for id in var.bedrock_inference_profile_ids :
    "arn:${local.partition}:bedrock:${local.bedrock_region}:${local.account_id}:inference-profile/${id}"
  ]
  # A cross-region inference profile routes each call to one of its regions; the
  # caller needs the foundation model there too.
  foundation_model_arns = distinct(flatten([
    for region in local.model_regions : [
      for id in var.bedrock_foundation_model_ids :
      "arn:${local.partition}:bedrock:${region}::foundation-model/${id}"
    ]
  ]))
  count_tokens_arns = [
    for id in var.bedrock_foundation_model_ids :
    "arn:${local.partition}:bedrock:${local.bedrock_region}::foundation-model/${id}"
  ]

  # Rendered from a JSON template (tests/deploy checks the same rendering for
  # least privilege); statements with no resource are dropped.
  bedrock_policy = jsondecode(templatefile("${path.module}/bedrock_policy.json.tftpl", {
    inference_profile_arns = local.inference_profile_arns
    foundation_model_arns  = local.foundation_model_arns
    count_tokens_arns      = local.count_tokens_arns
    guardrail_arns         = var.bedrock_guardrail_arns
  }))
  bedrock_policy_json = jsonencode({
    Version   = local.bedrock_policy.Version
    Statement = [for statement in local.bedrock_policy.Statement : statement if length(statement.Resource) > 0]
  })
}

# Only ECS tasks of this account and region may assume the task role.
data "aws_iam_policy_document" "task_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

data "aws_iam_policy_document" "execution_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.task_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "task_bedrock" {
  name   = "bedrock-invoke"
  role   = aws_iam_role.task.id
  policy = local.bedrock_policy_json
}

data "aws_iam_policy_document" "task_metrics" {
  count = var.enable_managed_prometheus ? 1 : 0

  statement {
    sid       = "RemoteWriteMetrics"
    actions   = ["aps:RemoteWrite"]
    resources = [aws_prometheus_workspace.gateway[0].arn]
  }
}

resource "aws_iam_role_policy" "task_metrics" {
  count  = var.enable_managed_prometheus ? 1 : 0
  name   = "metrics-remote-write"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task_metrics[0].json
}

data "aws_iam_policy_document" "task_exec" {
  count = var.enable_execute_command ? 1 : 0

  # checkov:skip=CKV_AWS_111:ECS Exec's session channel actions support no resource-level permissions
  # checkov:skip=CKV_AWS_356:ECS Exec's session channel actions support no resource-level permissions
  statement {
    sid = "EcsExecSessions"
    actions = [
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "task_exec" {
  count  = var.enable_execute_command ? 1 : 0
  name   = "ecs-exec"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task_exec[0].json
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.execution_assume.json
  tags               = local.tags
}

# Image pulls (ECR) and log delivery: AWS's managed policy for exactly this.
resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  statement {
    sid     = "ReadGatewaySecrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = concat(
      [local.keys_secret_arn, aws_secretsmanager_secret.admin_token.arn],
      var.enable_redis ? [aws_secretsmanager_secret.redis_url[0].arn] : [],
    )
  }
  statement {
    sid       = "ReadGatewayConfig"
    actions   = ["ssm:GetParameters"]
    resources = [aws_ssm_parameter.config.arn]
  }
  statement {
    sid       = "DecryptGatewaySecrets"
    actions   = ["kms:Decrypt"]
    resources = compact([aws_kms_key.gateway.arn, var.keys_secret_kms_key_arn])
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "gateway-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}
