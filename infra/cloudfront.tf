# CloudFront in front of the image bucket (enable_cloudfront, default true).
#
# The bucket stays private: the distribution reaches it through an Origin Access Control
# (CloudFront signs every origin request with SigV4), and the bucket policy (s3.tf) lets
# only this distribution's ARN read objects. Viewers need a signed URL on the image
# paths (trusted key group): the API hands out canned-policy URLs signed with the
# service's own RSA key (IMAGE_URL_SIGNER=cloudfront, chalicelib/urls.py), identical for
# every Lambda instance within URL_CACHE_WINDOW_SECONDS.
#
# The private key never enters Terraform: `make keys` generates the pair
# (scripts/cloudfront_keys.py), writes the private key to an SSM SecureString parameter
# named after the public key's fingerprint, and the public PEM goes in
# cloudfront_public_key_pems. The API function gets the parameter's *name* and
# ssm:GetParameter on that path (.chalice/policy-localstack.json).

locals {
  cloudfront_enabled = var.enable_cloudfront
  # Every public key of the group, keyed by its fingerprint (first 16 hex digits of the
  # SHA-256 of the trimmed PEM; scripts/cloudfront_keys.py computes the same).
  cloudfront_keys = {
    for pem in var.cloudfront_public_key_pems : substr(sha256(trimspace(pem)), 0, 16) => trimspace(pem)
  }
  # The API signs with the last key of the list (the newest during a rotation).
  cloudfront_signing_key = (
    length(var.cloudfront_public_key_pems) > 0
    ? substr(sha256(trimspace(var.cloudfront_public_key_pems[length(var.cloudfront_public_key_pems) - 1])), 0, 16)
    : ""
  )
  # Where scripts/cloudfront_keys.py stores each private key: {prefix}{fingerprint}.
  cloudfront_key_parameter_prefix = "/${var.app_name}/${var.stage}/cloudfront-key/"
  # The query parameters a signed URL carries (canned policy), plus the attachment
  # disposition S3 answers with (forwarded to the origin: OAC signs the origin request,
  # and S3 honours response-* overrides on signed requests).
  cloudfront_query_keys = ["Expires", "Signature", "Key-Pair-Id", "response-content-disposition"]
  # The key prefixes of originals and renditions (chalicelib/storage.py).
  cloudfront_signed_paths = ["images/*", "renditions/*"]
}

resource "aws_cloudfront_origin_access_control" "images" {
  count = local.cloudfront_enabled ? 1 : 0

  name                              = "${var.app_name}-${var.stage}-images"
  description                       = "CloudFront reads the private image bucket with SigV4."
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_public_key" "signing" {
  for_each = local.cloudfront_enabled ? local.cloudfront_keys : {}

  name        = "${var.app_name}-${var.stage}-${each.key}"
  comment     = "Signs the image service's URLs; private key in SSM ${local.cloudfront_key_parameter_prefix}${each.key}"
  encoded_key = "${each.value}\n"
}

resource "aws_cloudfront_key_group" "signing" {
  count = local.cloudfront_enabled ? 1 : 0

  name    = "${var.app_name}-${var.stage}-signing"
  comment = "Keys the image service signs URLs with (two during a rotation)."
  items   = [for fingerprint in keys(local.cloudfront_keys) : aws_cloudfront_public_key.signing[fingerprint].id]
}

# Cache key: the path and the signed-URL parameters only (no headers, no cookies), so
# one signed URL is one cache entry, and an attachment (disposition) is cached apart from
# the inline image. Objects carry Cache-Control: immutable for a year (chalicelib/
# storage.py), which min/default/max TTL respect.
resource "aws_cloudfront_cache_policy" "signed_images" {
  count = local.cloudfront_enabled ? 1 : 0

  name        = "${var.app_name}-${var.stage}-signed-images"
  comment     = "Path + signed-URL query parameters; origin Cache-Control decides the TTL."
  min_ttl     = 0
  default_ttl = 86400
  max_ttl     = 31536000

  parameters_in_cache_key_and_forwarded_to_origin {
    # Images are already compressed (JPEG, PNG, WebP): no gzip/brotli variants.
    enable_accept_encoding_gzip   = false
    enable_accept_encoding_brotli = false

    cookies_config {
      cookie_behavior = "none"
    }
    headers_config {
      header_behavior = "none"
    }
    query_strings_config {
      query_string_behavior = "whitelist"
      query_strings {
        items = local.cloudfront_query_keys
      }
    }
  }
}

resource "aws_cloudfront_distribution" "images" {
  count = local.cloudfront_enabled ? 1 : 0

  enabled         = true
  comment         = "${var.app_name}-${var.stage} images and renditions"
  http_version    = "http2and3"
  is_ipv6_enabled = true
  price_class     = var.cloudfront_price_class

  origin {
    origin_id                = "images"
    domain_name              = aws_s3_bucket.images.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.images[0].id
  }

  # Everything else in the bucket (uploads/) is refused: no signed URL is ever made for
  # it, and the trusted key group is required on every path.
  default_cache_behavior {
    target_origin_id       = "images"
    viewer_protocol_policy = "redirect-to-https"
    allowed_methods        = ["GET", "HEAD"]
    cached_methods         = ["GET", "HEAD"]
    compress               = false
    cache_policy_id        = aws_cloudfront_cache_policy.signed_images[0].id
    trusted_key_groups     = [aws_cloudfront_key_group.signing[0].id]
  }

  dynamic "ordered_cache_behavior" {
    for_each = local.cloudfront_signed_paths
    content {
      path_pattern           = ordered_cache_behavior.value
      target_origin_id       = "images"
      viewer_protocol_policy = "redirect-to-https"
      allowed_methods        = ["GET", "HEAD"]
      cached_methods         = ["GET", "HEAD"]
      compress               = false
      cache_policy_id        = aws_cloudfront_cache_policy.signed_images[0].id
      trusted_key_groups     = [aws_cloudfront_key_group.signing[0].id]
    }
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }

  lifecycle {
    precondition {
      condition     = length(var.cloudfront_public_key_pems) >= 1
      error_message = "enable_cloudfront needs cloudfront_public_key_pems (run `make keys`), or set enable_cloudfront = false."
    }
  }
}

# The bucket policy's statement for the distribution (s3.tf): the CloudFront service may
# GetObject under the signed paths, only on behalf of this distribution.
data "aws_iam_policy_document" "images_cloudfront" {
  count = local.cloudfront_enabled ? 1 : 0

  statement {
    sid       = "AllowCloudFrontDistributionOnly"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = [for path in local.cloudfront_signed_paths : "${aws_s3_bucket.images.arn}/${path}"]

    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.images[0].arn]
    }
  }
}
