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
  description = "Largest accepted image in bytes (MAX_IMAGE_BYTES), carried by direct uploads (POST /uploads); POST /images is bounded by what Lambda can carry."
  type        = number
  default     = 52428800
}

variable "max_image_pixels" {
  description = "Largest accepted width x height (MAX_IMAGE_PIXELS); larger images are refused as decompression bombs."
  type        = number
  default     = 50000000
}

variable "max_decode_bytes" {
  description = "Most bytes decoding one image may hold at once, what the decoder and each conversion hold for its mode and bit depth (frames held at the same time, not all of them), checked before decoding (MAX_DECODE_BYTES)."
  type        = number
  default     = 268435456

  validation {
    condition     = var.max_decode_bytes >= 1 && floor(var.max_decode_bytes) == var.max_decode_bytes
    error_message = "max_decode_bytes must be a positive whole number of bytes."
  }
}

variable "max_decoded_pixels" {
  description = "Most pixels of all the frames of one image together, the decoding work, checked before decoding (MAX_DECODED_PIXELS)."
  type        = number
  default     = 1000000000

  validation {
    condition     = var.max_decoded_pixels >= 1 && floor(var.max_decoded_pixels) == var.max_decoded_pixels
    error_message = "max_decoded_pixels must be a positive whole number of pixels."
  }
}

variable "max_animation_frames" {
  description = "Most frames an animated GIF, WebP or PNG may have (MAX_ANIMATION_FRAMES)."
  type        = number
  default     = 300

  validation {
    condition     = var.max_animation_frames >= 1 && floor(var.max_animation_frames) == var.max_animation_frames
    error_message = "max_animation_frames must be a positive whole number."
  }
}

variable "rendition_sizes" {
  description = "Longer side in pixels of each WebP rendition (RENDITION_SIZES, passed comma-separated)."
  type        = list(number)
  default     = [320, 640, 1080]

  validation {
    condition     = length(var.rendition_sizes) > 0 && alltrue([for size in var.rendition_sizes : size >= 1 && floor(size) == size])
    error_message = "rendition_sizes must be a non-empty list of positive whole pixel sizes."
  }
}

variable "upload_expires_seconds" {
  description = "Lifetime in seconds of a direct upload's presigned POST and pending item (UPLOAD_EXPIRES_SECONDS); the lifecycle rule on uploads/ expires objects after this, rounded up to whole days."
  type        = number
  default     = 3600

  validation {
    # SigV4 presigned requests live at most 7 days.
    condition     = var.upload_expires_seconds >= 1 && var.upload_expires_seconds <= 604800 && floor(var.upload_expires_seconds) == var.upload_expires_seconds
    error_message = "upload_expires_seconds must be a whole number of seconds from 1 to 604800 (7 days)."
  }
}

variable "upload_lease_seconds" {
  description = "How long whoever processes a direct upload (complete, the S3 event, the sweep) holds it before another may take it over (UPLOAD_LEASE_SECONDS). Longer than the upload handler's Lambda timeout (120 s), so a live holder never loses it."
  type        = number
  default     = 180

  validation {
    condition     = var.upload_lease_seconds > 120 && floor(var.upload_lease_seconds) == var.upload_lease_seconds
    error_message = "upload_lease_seconds must be a whole number of seconds above the upload handler's 120 s timeout."
  }
}

variable "sweep_grace_seconds" {
  description = "Age in seconds under which the sweep leaves an object or item alone (SWEEP_GRACE_SECONDS): a request may still be writing it."
  type        = number
  default     = 3600

  validation {
    condition     = var.sweep_grace_seconds >= 1 && floor(var.sweep_grace_seconds) == var.sweep_grace_seconds
    error_message = "sweep_grace_seconds must be a positive whole number of seconds."
  }
}

variable "url_expires_seconds" {
  description = "Least lifetime of the URLs in listings after they are handed out, and the default for views (URL_EXPIRES_SECONDS)."
  type        = number
  default     = 900
}

variable "url_cache_window_seconds" {
  description = "Every URL to an object is the same for every request within a window of this many seconds, so browsers and CloudFront reuse what they fetched (URL_CACHE_WINDOW_SECONDS)."
  type        = number
  default     = 3600

  validation {
    condition     = var.url_cache_window_seconds >= 1 && floor(var.url_cache_window_seconds) == var.url_cache_window_seconds && var.url_cache_window_seconds + 3600 <= 604800
    error_message = "url_cache_window_seconds must be a whole number of seconds, at most 7 days minus an hour (an S3 presigned URL's limit)."
  }
}

variable "enable_cloudfront" {
  description = "Serve images and renditions through a CloudFront distribution with signed URLs (IMAGE_URL_SIGNER=cloudfront; needs cloudfront_public_key_pems). false: S3 presigned URLs (IMAGE_URL_SIGNER=s3)."
  type        = bool
  default     = true
}

variable "cloudfront_public_key_pems" {
  description = "Public keys (PEM) CloudFront trusts for signed URLs: one, or two during a rotation (the API signs with the last). `make keys` writes infra/cloudfront_public_key.pem and stores the private key in SSM."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.cloudfront_public_key_pems) <= 2 && alltrue([for pem in var.cloudfront_public_key_pems : can(regex("^-----BEGIN PUBLIC KEY-----", trimspace(pem)))])
    error_message = "cloudfront_public_key_pems takes at most two PEM public keys (-----BEGIN PUBLIC KEY-----)."
  }
}

variable "cloudfront_price_class" {
  description = "CloudFront price class: PriceClass_100 (North America, Europe), PriceClass_200 or PriceClass_All."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.cloudfront_price_class)
    error_message = "cloudfront_price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

variable "s3_public_endpoint_url" {
  description = "Endpoint presigned URLs are signed for (S3_PUBLIC_ENDPOINT_URL). Set for LocalStack, where the Lambda sees an internal endpoint the host cannot reach; empty on AWS."
  type        = string
  default     = ""
}

variable "auth_mode" {
  description = "AUTH_MODE of the functions, and the authorizer API Gateway runs on the /images routes: \"none\" (callers name themselves with X-User-Id), \"jwt\" (the app's Chalice authorizer verifies HS256 bearer tokens; needs jwt_secret) or \"cognito\" (a Cognito user pool authorizer; needs cognito_user_pool_arn)."
  type        = string
  # Safe by default: a plain `terraform apply` (AWS) needs a jwt_secret or another mode
  # chosen on purpose. `make deploy` (LocalStack) passes "none" unless AUTH_MODE says otherwise.
  default = "jwt"

  validation {
    condition     = contains(["none", "jwt", "cognito"], var.auth_mode)
    error_message = "auth_mode must be \"none\", \"jwt\" or \"cognito\"."
  }
}

variable "jwt_secret" {
  description = "HS256 key bearer tokens are signed with (JWT_SECRET), at least 32 characters; required when auth_mode is \"jwt\". `make deploy` generates one into infra/.jwt_secret."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.jwt_secret == "" || length(var.jwt_secret) >= 32
    error_message = "jwt_secret must be at least 32 characters."
  }
}

variable "jwt_issuer" {
  description = "The iss claim bearer tokens must carry (JWT_ISSUER) when auth_mode is \"jwt\"."
  type        = string
  default     = "image-service"
}

variable "jwt_audience" {
  description = "The aud claim bearer tokens must carry (JWT_AUDIENCE) when auth_mode is \"jwt\"."
  type        = string
  default     = "image-service"
}

variable "cognito_user_pool_arn" {
  description = "ARN of the Cognito user pool whose tokens API Gateway accepts when auth_mode is \"cognito\" (e.g. aws_cognito_user_pool.<name>.arn)."
  type        = string
  default     = ""
}

variable "throttle_rate_limit" {
  description = "API Gateway stage throttling: steady-state requests per second, across all clients and routes."
  type        = number
  default     = 50

  validation {
    condition     = var.throttle_rate_limit > 0
    error_message = "throttle_rate_limit must be positive."
  }
}

variable "throttle_burst_limit" {
  description = "API Gateway stage throttling: requests allowed in a burst above the rate (token bucket size)."
  type        = number
  default     = 100

  validation {
    condition     = var.throttle_burst_limit > 0 && floor(var.throttle_burst_limit) == var.throttle_burst_limit
    error_message = "throttle_burst_limit must be a positive whole number."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which S3 aborts an unfinished multipart upload to the bucket and frees its parts (the service itself uploads in one PUT)."
  type        = number
  default     = 1

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && floor(var.abort_incomplete_multipart_upload_days) == var.abort_incomplete_multipart_upload_days
    error_message = "abort_incomplete_multipart_upload_days must be a whole number of days, at least 1."
  }
}

variable "cors_allow_origins" {
  description = "Origins browsers may use the service from: the API's CORS_ALLOW_ORIGINS (joined with commas) and the bucket's CORS rule (POST direct uploads, GET images). \"*\" allows any origin; empty (the default): same origin only, and no bucket CORS rule. API Gateway's own answers (authorizer 401/403, throttling 429, default 4XX/5XX) allow \"*\" when listed, else the first origin listed (they cannot choose per request): list first the origin whose pages must read them."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for origin in var.cors_allow_origins : origin == "*" || can(regex("^https?://[^/,\\s]+$", origin))])
    error_message = "cors_allow_origins entries must be \"*\" or an origin such as https://app.example.com (scheme://host[:port], no path)."
  }
}

variable "require_tls" {
  description = "Attach the bucket policy that denies every S3 request made without TLS. Set false only for emulators (LocalStack), whose endpoints are plain http."
  type        = bool
  default     = true
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
  # Where direct uploads are posted (chalicelib.storage.UPLOAD_PREFIX; app.py's S3
  # notification filters on it). tests/unit/test_infra_security.py checks they agree.
  upload_prefix = "uploads/"
  # Lifecycle expiration of uploads/: the upload lifetime in whole days, at least 1.
  upload_expiration_days = max(1, ceil(var.upload_expires_seconds / 86400))
}
