# Audit trail of a stack that holds patient data (docs/security.md, HIPAA §164.312(b)):
#
#   CloudTrail    - every API call in every region, and every read and write of an object in
#                   the raw, processed and models buckets; digest files make tampering
#                   detectable (log file validation); encrypted with the audit key; copied to
#                   CloudWatch Logs for queries and alarms.
#   access_logs   - S3 server access logs of the data buckets and of the trail bucket.
#
# Both buckets are private, versioned, TLS-only and kept for var.audit_log_retention_days.

resource "aws_s3_bucket" "audit" {
  #checkov:skip=CKV_AWS_144:Audit logs stay in the stack's region with the data they describe; replicating them elsewhere is the operator's data-residency decision.
  #checkov:skip=CKV_AWS_145:S3 delivers server access logs only to buckets encrypted with S3-managed keys, so access_logs uses SSE-S3; the trail bucket uses the audit KMS key.
  #checkov:skip=CKV2_AWS_62:Log objects have no consumer for event notifications; CloudTrail's events reach CloudWatch Logs directly.
  for_each = local.audit_bucket_names

  bucket = each.value
  # An audit trail must outlive a `terraform destroy` of the stack it audits.
  force_destroy = false

  tags = { "eegfm.io/data" = "audit-${each.key}" }
}

resource "aws_s3_bucket_ownership_controls" "audit" {
  for_each = local.audit_bucket_names

  bucket = aws_s3_bucket.audit[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "audit" {
  for_each = local.audit_bucket_names

  bucket                  = aws_s3_bucket.audit[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "audit" {
  for_each = local.audit_bucket_names

  bucket = aws_s3_bucket.audit[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "audit" {
  for_each = local.audit_bucket_names

  bucket = aws_s3_bucket.audit[each.key].id
  rule {
    # S3 delivers server access logs only to buckets encrypted with S3-managed keys.
    apply_server_side_encryption_by_default {
      sse_algorithm     = each.key == "trail" ? "aws:kms" : "AES256"
      kms_master_key_id = each.key == "trail" ? aws_kms_key.audit.arn : null
    }
    bucket_key_enabled = each.key == "trail"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "audit" {
  for_each = local.audit_bucket_names

  bucket = aws_s3_bucket.audit[each.key].id

  rule {
    id     = "retain-then-expire"
    status = "Enabled"

    filter {}

    expiration {
      days = var.audit_log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.audit]
}

# The trail bucket's own access logs go to the access-log bucket; that bucket does not log
# itself (each delivery would log another delivery).
resource "aws_s3_bucket_logging" "audit" {
  bucket        = aws_s3_bucket.audit["trail"].id
  target_bucket = aws_s3_bucket.audit["access_logs"].id
  target_prefix = "s3/audit-trail/"

  depends_on = [aws_s3_bucket_policy.audit]
}

locals {
  trail_name = "${var.name_prefix}-trail"
  trail_arn  = "arn:${local.partition}:cloudtrail:${var.region}:${local.account_id}:trail/${local.trail_name}"

  # Who may write into each audit bucket: CloudTrail for this trail only, S3 logging for this
  # account's buckets only (the conditions stop another account's trail or bucket using ours).
  audit_writers = {
    trail = [
      {
        Sid       = "CloudTrailAclCheck"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "s3:GetBucketAcl"
        Resource  = aws_s3_bucket.audit["trail"].arn
        Condition = { StringEquals = { "aws:SourceArn" = local.trail_arn } }
      },
      {
        Sid       = "CloudTrailWrite"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.audit["trail"].arn}/AWSLogs/${local.account_id}/*"
        Condition = { StringEquals = { "aws:SourceArn" = local.trail_arn } }
      },
    ]
    access_logs = [
      {
        Sid       = "S3ServerAccessLogs"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.audit["access_logs"].arn}/s3/*"
        Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
      },
    ]
  }
}

resource "aws_s3_bucket_policy" "audit" {
  for_each = local.audit_bucket_names

  bucket = aws_s3_bucket.audit[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(local.audit_writers[each.key], [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.audit[each.key].arn, "${aws_s3_bucket.audit[each.key].arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }])
  })

  depends_on = [aws_s3_bucket_public_access_block.audit]
}

resource "aws_cloudtrail" "this" {
  #checkov:skip=CKV_AWS_252:No one subscribes to per-file delivery notices; alarms are built on the CloudWatch Logs copy (cloud_watch_logs_group_arn).
  name                          = local.trail_name
  s3_bucket_name                = aws_s3_bucket.audit["trail"].id
  is_multi_region_trail         = true
  include_global_service_events = true
  enable_log_file_validation    = true
  kms_key_id                    = aws_kms_key.audit.arn
  cloud_watch_logs_group_arn    = "${aws_cloudwatch_log_group.trail.arn}:*"
  cloud_watch_logs_role_arn     = aws_iam_role.log_delivery["trail_logs"].arn

  event_selector {
    read_write_type           = "All"
    include_management_events = true

    # Object-level events: which principal read or wrote which recording, shard or model.
    data_resource {
      type   = "AWS::S3::Object"
      values = [for key in keys(local.bucket_names) : "${aws_s3_bucket.this[key].arn}/"]
    }
  }

  # CloudTrail checks at creation that it may write to the bucket.
  depends_on = [aws_s3_bucket_policy.audit]
}
