# An example root: the gateway in an existing VPC, behind an ALB with your
# certificate, three models through US cross-region inference profiles.
# Copy terraform.tfvars.example to terraform.tfvars and fill it in.

module "gateway" {
  source = "../../modules/gateway"

  name               = var.name
  vpc_id             = var.vpc_id
  public_subnet_ids  = var.public_subnet_ids
  private_subnet_ids = var.private_subnet_ids
  certificate_arn    = var.certificate_arn
  alb_ingress_cidrs  = var.alb_ingress_cidrs

  enable_cloudfront = var.enable_cloudfront
  alb_domain_name   = var.alb_domain_name

  extproc_image = var.extproc_image
  envoy_image   = var.envoy_image

  gateway_config_file = "${path.module}/gateway.yaml"
  keys_secret_arn     = var.keys_secret_arn

  bedrock_inference_profile_ids = var.bedrock_inference_profile_ids
  bedrock_foundation_model_ids  = var.bedrock_foundation_model_ids
  bedrock_model_regions         = var.bedrock_model_regions

  min_count = var.min_count
  max_count = var.max_count

  tags = var.tags
}
