resource "aws_lb" "gateway" {
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = var.alb_internal
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.public_subnet_ids
  idle_timeout               = var.alb_idle_timeout
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  tags                       = local.tags

  # checkov:skip=CKV_AWS_91:access logs are optional (alb_access_logs_bucket); Envoy logs every request to CloudWatch
  # checkov:skip=CKV2_AWS_28:WAF is optional (alb_web_acl_arn); authentication is the gateway's API key check
  # checkov:skip=CKV2_AWS_76:the web ACL and its rule groups are the operator's (alb_web_acl_arn), not this module's
  dynamic "access_logs" {
    for_each = var.alb_access_logs_bucket == null ? [] : [var.alb_access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }
}

resource "aws_wafv2_web_acl_association" "alb" {
  count        = var.alb_web_acl_arn == null ? 0 : 1
  resource_arn = aws_lb.gateway.arn
  web_acl_arn  = var.alb_web_acl_arn
}

resource "aws_lb_target_group" "gateway" {
  name                 = var.name
  port                 = 8081
  protocol             = "HTTP"
  protocol_version     = "HTTP1"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay
  tags                 = local.tags

  # GET /health is answered by Envoy from its gRPC health check of the extproc:
  # 200 only while the extproc is serving (it turns NOT_SERVING on SIGTERM).
  health_check {
    path                = "/health"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.gateway.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  tags              = local.tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.gateway.arn
  }
}

# No port 80 listener, not even a redirect: a client that tried plain HTTP would
# already have sent its API key in clear text.
