variable "region" {
  description = "AWS region of the deployment (and of Bedrock)."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name of the deployment."
  type        = string
  default     = "bedrock-gateway"
}

variable "vpc_id" {
  description = "Existing VPC."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the ALB."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Subnets of the tasks and Redis (with a NAT gateway or VPC endpoints)."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate for the ALB's HTTPS listener."
  type        = string
}

variable "alb_ingress_cidrs" {
  description = "Client networks allowed to reach the ALB."
  type        = list(string)
  default     = ["10.0.0.0/8"]
}

variable "enable_cloudfront" {
  description = "Put CloudFront in front of the ALB."
  type        = bool
  default     = false
}

variable "alb_domain_name" {
  description = "With CloudFront: DNS name of the ALB covered by certificate_arn."
  type        = string
  default     = null
}

variable "keys_secret_arn" {
  description = "Secrets Manager secret holding the keys file (null: the module creates an empty one)."
  type        = string
  default     = null
}

variable "extproc_image" {
  description = "Image of the extproc (docker/extproc.Dockerfile), pushed to your registry."
  type        = string
}

variable "envoy_image" {
  description = "Image of Envoy (docker/envoy.Dockerfile), pushed to your registry."
  type        = string
}

variable "bedrock_inference_profile_ids" {
  description = "Inference profiles of gateway.yaml's catalogue."
  type        = list(string)
}

variable "bedrock_foundation_model_ids" {
  description = "Foundation models behind them (gateway.yaml's base_id values)."
  type        = list(string)
}

variable "bedrock_model_regions" {
  description = "Regions the inference profiles route to."
  type        = list(string)
}

variable "min_count" {
  description = "Fewest tasks."
  type        = number
  default     = 2
}

variable "max_count" {
  description = "Most tasks."
  type        = number
  default     = 10
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}
