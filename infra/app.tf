# The Chalice app: ./chalice is the module `make package` writes
# (`chalice package --pkg-format terraform`, then scripts/package_terraform.py).
# Every "${var.*}" in the localstack stage of .chalice/config.json (environment) and in
# .chalice/policy-localstack*.json (IAM policies) is one of the inputs below, so the
# functions' environment and permissions point at exactly this bucket and table.

resource "aws_cloudwatch_log_group" "api" {
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
}

# The Chalice authorizer's function (jwt_auth): created in every auth_mode, invoked by
# API Gateway only when auth_mode = "jwt". Its policy (.chalice/policy-localstack-authorizer.json)
# allows nothing but writing to this log group.
resource "aws_cloudwatch_log_group" "authorizer" {
  name              = "/aws/lambda/${local.function_name}-jwt_auth"
  retention_in_days = var.log_retention_days
}

# The S3 notification's function (on_upload_created, ingests what clients post under
# uploads/) and the scheduled sweep: each its own log group and least-privilege policy
# (.chalice/policy-localstack-upload-handler.json, .chalice/policy-localstack-sweep.json).
resource "aws_cloudwatch_log_group" "upload_handler" {
  name              = "/aws/lambda/${local.function_name}-on_upload_created"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_group" "sweep" {
  name              = "/aws/lambda/${local.function_name}-sweep"
  retention_in_days = var.log_retention_days
}

module "api" {
  source = "./chalice"

  bucket_name            = aws_s3_bucket.images.id
  bucket_arn             = aws_s3_bucket.images.arn
  table_name             = aws_dynamodb_table.metadata.name
  table_arn              = aws_dynamodb_table.metadata.arn
  log_group_arn          = aws_cloudwatch_log_group.api.arn
  token_secret           = var.token_secret
  max_image_bytes        = var.max_image_bytes
  max_image_pixels       = var.max_image_pixels
  max_decode_bytes       = var.max_decode_bytes
  max_decoded_pixels     = var.max_decoded_pixels
  max_animation_frames   = var.max_animation_frames
  rendition_sizes        = join(",", var.rendition_sizes)
  upload_expires_seconds = var.upload_expires_seconds
  upload_lease_seconds   = var.upload_lease_seconds
  url_expires_seconds    = var.url_expires_seconds
  # Delivery (cloudfront.tf): CloudFront signed URLs when enabled, else S3 presigned.
  url_cache_window_seconds = var.url_cache_window_seconds
  image_url_signer         = var.enable_cloudfront ? "cloudfront" : "s3"
  cloudfront_domain        = var.enable_cloudfront ? aws_cloudfront_distribution.images[0].domain_name : ""
  cloudfront_key_pair_id   = var.enable_cloudfront ? aws_cloudfront_public_key.signing[local.cloudfront_signing_key].id : ""
  # The SSM parameter's name, never its value: the private key stays out of the state.
  cloudfront_private_key_parameter = var.enable_cloudfront ? "${local.cloudfront_key_parameter_prefix}${local.cloudfront_signing_key}" : ""
  cloudfront_key_parameter_arn     = "arn:${data.aws_partition.current.partition}:ssm:${var.region}:${data.aws_caller_identity.current.account_id}:parameter${local.cloudfront_key_parameter_prefix}*"
  sweep_grace_seconds              = var.sweep_grace_seconds
  s3_public_endpoint_url           = var.s3_public_endpoint_url
  # One variable: the API's CORS_ALLOW_ORIGINS, the bucket's CORS rule (s3.tf), and the
  # CORS headers of API Gateway's own answers (401/403/429, default 4XX/5XX: the first
  # origin listed, or *), which scripts/package_terraform.py puts in the REST API's body.
  cors_allow_origins = join(",", var.cors_allow_origins)
  # One variable: the functions' AUTH_MODE and the Swagger body (authorizer) API Gateway
  # gets, see scripts/package_terraform.py.
  auth_mode                = var.auth_mode
  jwt_secret               = var.jwt_secret
  jwt_issuer               = var.jwt_issuer
  jwt_audience             = var.jwt_audience
  cognito_user_pool_arn    = var.cognito_user_pool_arn
  authorizer_log_group_arn = aws_cloudwatch_log_group.authorizer.arn
  # The S3 notification of uploads/ (through the module: scripts/package_terraform.py
  # points it at bucket_name) and the sweep's schedule invoke these two functions.
  upload_handler_log_group_arn = aws_cloudwatch_log_group.upload_handler.arn
  sweep_log_group_arn          = aws_cloudwatch_log_group.sweep.arn
}

# Throttling of every method of the stage (API Gateway answers 429 above it, in Chalice's
# error shape). Account-level limits still apply on top.
resource "aws_api_gateway_method_settings" "throttling" {
  rest_api_id = module.api.RestAPIId
  stage_name  = module.api.StageName
  method_path = "*/*"

  settings {
    throttling_rate_limit  = var.throttle_rate_limit
    throttling_burst_limit = var.throttle_burst_limit
  }
}
