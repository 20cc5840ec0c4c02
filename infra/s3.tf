# The image bucket: private (public access blocked, ACLs off; CloudFront reads it through
# its Origin Access Control, cloudfront.tf), encrypted at rest, TLS only, open to browsers of var.cors_allow_origins for presigned GETs and the direct
# uploads' presigned POSTs (CORS), and cleaned of abandoned multipart uploads and of
# direct uploads never completed.

resource "aws_s3_bucket" "images" {
  bucket        = local.bucket_name
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_public_access_block" "images" {
  bucket                  = aws_s3_bucket.images.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "images" {
  bucket = aws_s3_bucket.images.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "images" {
  bucket = aws_s3_bucket.images.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# The origins are the API's CORS_ALLOW_ORIGINS (one variable, app.tf): a browser page
# from one of them may call the API, POST a direct upload (presigned POST) and GET images
# and renditions (presigned GET). No origins: no CORS rule at all (same origin only).
resource "aws_s3_bucket_cors_configuration" "images" {
  count = length(var.cors_allow_origins) > 0 ? 1 : 0

  bucket = aws_s3_bucket.images.id
  cors_rule {
    allowed_methods = ["GET", "HEAD", "POST"]
    allowed_origins = var.cors_allow_origins
    allowed_headers = ["*"]
    expose_headers  = ["ETag", "Content-Length", "Content-Type", "Content-Disposition"]
    max_age_seconds = 3000
  }
}

# Deny every request that does not come over TLS (aws:SecureTransport false), whoever
# signs it: presigned URLs on AWS are https. Off (require_tls = false) for emulators,
# which only speak http (localstack.tfvars).
data "aws_iam_policy_document" "images_tls_only" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.images.arn, "${aws_s3_bucket.images.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# The bucket's one policy: the TLS-only Deny (require_tls) and, with CloudFront, the
# Allow for that distribution only (cloudfront.tf).
data "aws_iam_policy_document" "images" {
  source_policy_documents = concat(
    var.require_tls ? [data.aws_iam_policy_document.images_tls_only.json] : [],
    [for document in data.aws_iam_policy_document.images_cloudfront : document.json],
  )
}

resource "aws_s3_bucket_policy" "images" {
  count = var.require_tls || var.enable_cloudfront ? 1 : 0

  bucket = aws_s3_bucket.images.id
  policy = data.aws_iam_policy_document.images.json

  # S3 refuses policies while the public access block is being changed.
  depends_on = [aws_s3_bucket_public_access_block.images]
}

# Parts of a multipart upload that never completes are stored (and billed) but invisible
# to listings; S3 drops them after abort_incomplete_multipart_upload_days.
# Direct uploads: ingest removes the object under uploads/ once the image is stored, so
# what stays there is an upload never completed (or rejected and not yet removed). S3
# counts lifecycle days from the object's creation, in whole days (rounded up to the
# next midnight UTC), so objects expire after local.upload_expiration_days: the
# presigned POST's lifetime rounded up to whole days, at least 1. The sweep removes
# expired uploads' objects earlier (once past SWEEP_GRACE_SECONDS).
resource "aws_s3_bucket_lifecycle_configuration" "images" {
  bucket = aws_s3_bucket.images.id

  rule {
    id     = "expire-direct-uploads"
    status = "Enabled"

    filter {
      prefix = local.upload_prefix
    }

    expiration {
      days = local.upload_expiration_days
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }
}
