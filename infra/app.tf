# The Chalice app: ./chalice is the module `make package` writes
# (`chalice package --pkg-format terraform`, then scripts/package_terraform.py).
# Every "${var.*}" in the localstack stage of .chalice/config.json (environment) and in
# .chalice/policy-localstack.json (IAM policy) is one of the inputs below, so the
# function's environment and its permissions point at exactly this bucket and table.

resource "aws_cloudwatch_log_group" "api" {
  name              = "/aws/lambda/${local.function_name}"
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
  url_expires_seconds    = var.url_expires_seconds
  s3_public_endpoint_url = var.s3_public_endpoint_url
  auth_enabled           = var.auth_enabled
}
