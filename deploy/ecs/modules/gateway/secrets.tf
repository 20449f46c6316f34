# Secrets and configuration. Choice for the gateway configuration: SSM Parameter
# Store (see deploy/README.md, "Why SSM for the configuration"): the same images
# run in every environment, the configuration is versioned and audited apart
# from them, ECS injects it without code, and a change rolls the service (its
# hash is part of the task definition).

resource "aws_kms_key" "gateway" {
  description             = "${var.name}: gateway configuration, secrets, logs and Redis at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "gateway" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.gateway.key_id
}

data "aws_iam_policy_document" "kms" {
  # In a key policy "*" is this key. The account's IAM policies decide who may
  # use it (the execution role: kms:Decrypt, see iam.tf).
  # checkov:skip=CKV_AWS_109:key policy; "*" is this key, and the account root must keep administering it
  # checkov:skip=CKV_AWS_111:key policy; "*" is this key, and the account root must keep administering it
  # checkov:skip=CKV_AWS_356:key policy; "*" is this key, and the account root must keep administering it
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogsEncryptsTheGatewayLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/ecs/${var.name}/*"]
    }
  }
}

resource "aws_ssm_parameter" "config" {
  name        = "/${var.name}/gateway.yaml"
  description = "Bedrock gateway configuration (GATEWAY_CONFIG); consumers appear by key hash only"
  type        = "SecureString"
  tier        = "Intelligent-Tiering"
  key_id      = aws_kms_key.gateway.arn
  value       = local.gateway_config
  tags        = local.tags
}

# The keys file (YAML `consumer: key`; a JSON object of the same pairs is
# valid YAML too, so the console's key/value editor works). The module never
# holds a key: the value is put out of band (deploy/README.md).
resource "aws_secretsmanager_secret" "keys" {
  count       = var.keys_secret_arn == null ? 1 : 0
  name_prefix = "${var.name}/keys-"
  description = "Bedrock gateway API keys (GATEWAY_KEYS_FILE): consumer -> key"
  kms_key_id  = aws_kms_key.gateway.arn
  tags        = local.tags
  # checkov:skip=CKV2_AWS_57:API keys are rotated by the platform team per consumer (extproc keys new), not by a Lambda
}

resource "random_password" "admin_token" {
  length  = 48
  special = false
}

# GATEWAY_ADMIN_TOKEN: the admin API listens on 127.0.0.1:9465 inside the task
# only (ECS Exec: `extproc usage`).
resource "aws_secretsmanager_secret" "admin_token" {
  name_prefix = "${var.name}/admin-token-"
  description = "Bedrock gateway admin API token (GATEWAY_ADMIN_TOKEN)"
  kms_key_id  = aws_kms_key.gateway.arn
  tags        = local.tags
  # checkov:skip=CKV2_AWS_57:rotated by replacing random_password.admin_token (terraform apply -replace), which rolls the service
}

resource "aws_secretsmanager_secret_version" "admin_token" {
  secret_id     = aws_secretsmanager_secret.admin_token.id
  secret_string = random_password.admin_token.result
}
