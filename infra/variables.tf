variable "app_name" {
  description = "Chalice app_name (.chalice/config.json); prefixes every resource name."
  type        = string
  default     = "image-service"
}

variable "stage" {
  description = "Chalice stage that was packaged into ./chalice (`chalice package --stage`); names the function and the default bucket and table."
  type        = string
  default     = "localstack"
}

variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "bucket_name" {
  description = "S3 bucket for image bytes. Empty: \"<app_name>-<stage>-images-<account id>\" (bucket names are global)."
  type        = string
  default     = ""
}

variable "table_name" {
  description = "DynamoDB table for image metadata. Empty: \"<app_name>-<stage>\"."
  type        = string
  default     = ""
}

variable "token_secret" {
  description = "HMAC key that signs pagination tokens (TOKEN_SECRET). `make deploy` generates one into infra/.token_secret."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.token_secret) >= 32
    error_message = "token_secret must be at least 32 characters."
  }
}

variable "max_image_bytes" {
  description = "Largest accepted upload in bytes (MAX_IMAGE_BYTES). API Gateway itself caps request bodies at 10 MiB."
  type        = number
  default     = 10485760
}

variable "max_image_pixels" {
  description = "Largest accepted width x height (MAX_IMAGE_PIXELS); larger images are refused as decompression bombs."
  type        = number
  default     = 50000000
}

variable "url_expires_seconds" {
  description = "Lifetime of presigned URLs in listings, and the default for views (URL_EXPIRES_SECONDS)."
  type        = number
  default     = 900
}

variable "s3_public_endpoint_url" {
  description = "Endpoint presigned URLs are signed for (S3_PUBLIC_ENDPOINT_URL). Set for LocalStack, where the Lambda sees an internal endpoint the host cannot reach; empty on AWS."
  type        = string
  default     = ""
}

variable "auth_enabled" {
  description = "AUTH_ENABLED: take the caller's identity from the API Gateway authorizer, never from a header."
  type        = bool
  default     = false
}

variable "cors_allowed_origins" {
  description = "Origins allowed to GET and PUT objects in the bucket from a browser."
  type        = list(string)
  default     = ["*"]
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds images (true for LocalStack only)."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "How long CloudWatch keeps the function's logs."
  type        = number
  default     = 14
}

variable "localstack_edge" {
  description = "LocalStack's execute-api host suffix and port (e.g. \"localhost.localstack.cloud:4566\"). Set: api_url is LocalStack's URL for the API; empty: AWS's."
  type        = string
  default     = ""
}

locals {
  bucket_name   = var.bucket_name != "" ? var.bucket_name : "${var.app_name}-${var.stage}-images-${data.aws_caller_identity.current.account_id}"
  table_name    = var.table_name != "" ? var.table_name : "${var.app_name}-${var.stage}"
  function_name = "${var.app_name}-${var.stage}" # Chalice names the API handler <app_name>-<stage>
}
