output "api_url" {
  description = "Base URL of the API (LocalStack's execute-api URL when localstack_edge is set)."
  value = (
    var.localstack_edge == ""
    ? module.api.EndpointURL
    : replace(module.api.EndpointURL, "/^https://[^/]+/", "http://${module.api.RestAPIId}.execute-api.${var.localstack_edge}/")
  )
}

output "rest_api_id" {
  description = "API Gateway REST API id."
  value       = module.api.RestAPIId
}

output "function_name" {
  description = "The Lambda function serving the API."
  value       = local.function_name
}

output "upload_handler_function_name" {
  description = "The Lambda function the bucket notifies of objects created under uploads/ (on_upload_created)."
  value       = "${local.function_name}-on_upload_created"
}

output "sweep_function_name" {
  description = "The Lambda function the hourly schedule invokes (sweep)."
  value       = "${local.function_name}-sweep"
}

output "upload_expiration_days" {
  description = "Days after which the bucket's lifecycle rule removes an object left under uploads/."
  value       = local.upload_expiration_days
}

output "bucket_name" {
  description = "S3 bucket holding image bytes."
  value       = aws_s3_bucket.images.id
}

output "table_name" {
  description = "DynamoDB table holding image metadata."
  value       = aws_dynamodb_table.metadata.name
}

output "auth_mode" {
  description = "What authenticates callers of the /images routes: none, jwt or cognito."
  value       = var.auth_mode

  # Checked at plan time, before anything is created.
  precondition {
    condition     = var.auth_mode != "jwt" || length(var.jwt_secret) >= 32
    error_message = "auth_mode \"jwt\" needs jwt_secret (at least 32 characters)."
  }
  precondition {
    condition     = var.auth_mode != "cognito" || can(regex("^arn:[^:]+:cognito-idp:[^:]+:[0-9]{12}:userpool/.+$", var.cognito_user_pool_arn))
    error_message = "auth_mode \"cognito\" needs cognito_user_pool_arn (arn:aws:cognito-idp:REGION:ACCOUNT:userpool/ID)."
  }
}

output "cloudfront_domain" {
  description = "Domain of the CloudFront distribution image URLs point at (empty without CloudFront)."
  value       = var.enable_cloudfront ? aws_cloudfront_distribution.images[0].domain_name : ""
}

output "cloudfront_private_key_parameter" {
  description = "SSM SecureString parameter the API reads its CloudFront signing key from (`make keys` writes it; empty without CloudFront)."
  value       = var.enable_cloudfront ? "${local.cloudfront_key_parameter_prefix}${local.cloudfront_signing_key}" : ""
}
