# Terraform and provider versions, and the AWS provider.
# `make deploy` runs this through `tflocal`, which adds an override file pointing every
# AWS endpoint at LocalStack; plain `terraform` deploys the same stack to real AWS.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      app   = var.app_name
      stage = var.stage
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}
