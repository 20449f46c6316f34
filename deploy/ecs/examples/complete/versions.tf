terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
  }

  # Keep the state in an encrypted, versioned S3 bucket: it holds the Redis AUTH
  # token and the admin token (never the API keys).
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "bedrock-gateway/terraform.tfstate"
  #   region       = "us-east-1"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = { "managed-by" = "terraform" }
  }
}
