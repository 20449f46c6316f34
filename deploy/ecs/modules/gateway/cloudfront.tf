# Optional CloudFront in front of the ALB: TLS and HTTP/3 at the edge, the ALB
# reachable from CloudFront only (network.tf). Nothing is cached: every header
# (API keys included), the query string and the body go to the gateway.

resource "aws_cloudfront_distribution" "gateway" {
  count           = var.enable_cloudfront ? 1 : 0
  enabled         = true
  comment         = "${var.name}: Bedrock gateway"
  price_class     = var.cloudfront_price_class
  aliases         = var.cloudfront_aliases
  http_version    = "http2and3"
  is_ipv6_enabled = true
  web_acl_id      = var.cloudfront_web_acl_arn
  tags            = local.tags

  # checkov:skip=CKV_AWS_68:WAF is optional (cloudfront_web_acl_arn); authentication is the gateway's API key check
  # checkov:skip=CKV_AWS_86:CloudFront access logs add nothing to Envoy's per-request log in CloudWatch
  # checkov:skip=CKV_AWS_310:one origin, the ALB, which is itself spread over AZs
  # checkov:skip=CKV_AWS_374:an API for the company's own teams; restrict countries with a WAF rule if needed
  # checkov:skip=CKV2_AWS_32:an API answering JSON and event streams, no browser pages to protect with security headers
  # checkov:skip=CKV2_AWS_47:the gateway validates every request body itself; attach cloudfront_web_acl_arn for WAF rules
  # checkov:skip=CKV_AWS_174:the default *.cloudfront.net certificate forces TLSv1 as minimum; with aliases TLSv1.2_2021 is used

  origin {
    origin_id   = "alb"
    domain_name = var.alb_domain_name

    custom_origin_config {
      http_port                = 80
      https_port               = 443
      origin_protocol_policy   = "https-only"
      origin_ssl_protocols     = ["TLSv1.2"]
      origin_read_timeout      = var.cloudfront_origin_read_timeout
      origin_keepalive_timeout = 60
    }
  }

  default_cache_behavior {
    target_origin_id       = "alb"
    viewer_protocol_policy = "https-only"
    allowed_methods        = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
    cached_methods         = ["GET", "HEAD"]
    compress               = false

    # Forward everything, cache nothing: "*" headers disables caching and is the
    # one setting that also forwards Authorization on GET (GET /v1/models).
    forwarded_values {
      query_string = true
      headers      = ["*"]
      cookies {
        forward = "none"
      }
    }
    min_ttl     = 0
    default_ttl = 0
    max_ttl     = 0
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = var.cloudfront_certificate_arn == null
    acm_certificate_arn            = var.cloudfront_certificate_arn
    ssl_support_method             = var.cloudfront_certificate_arn == null ? null : "sni-only"
    minimum_protocol_version       = var.cloudfront_certificate_arn == null ? "TLSv1" : "TLSv1.2_2021"
  }
}
