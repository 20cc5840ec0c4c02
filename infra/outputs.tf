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

output "bucket_name" {
  description = "S3 bucket holding image bytes."
  value       = aws_s3_bucket.images.id
}

output "table_name" {
  description = "DynamoDB table holding image metadata."
  value       = aws_dynamodb_table.metadata.name
}
