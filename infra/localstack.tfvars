# Values for LocalStack (`make deploy`); real AWS needs none of them.
# Presigned URLs are signed for the host's view of LocalStack, not the internal endpoint
# LocalStack gives the Lambda in AWS_ENDPOINT_URL.
s3_public_endpoint_url = "http://localhost:4566"
localstack_edge        = "localhost.localstack.cloud:4566"
force_destroy          = true
# LocalStack's S3 is plain http: a TLS-only bucket policy would deny the Lambda and the
# presigned URLs wherever LocalStack enforces bucket policies.
require_tls = false
# The web page `make deploy` serves from LocalStack's execute-api origin posts uploads to
# LocalStack's S3 (localhost:4566), another origin: allow any on this local emulator. On
# AWS, list the origins that may use the service (e.g. the API's own URL's origin).
cors_allow_origins = ["*"]
# LocalStack's community edition has no CloudFront: images are served by S3 presigned
# URLs (IMAGE_URL_SIGNER=s3), still the same for a whole URL_CACHE_WINDOW_SECONDS.
enable_cloudfront = false
