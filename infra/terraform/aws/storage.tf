# Three buckets with identical hardening; only their IAM and policies differ.
# Each companion resource iterates over local.bucket_names and indexes the bucket by key
# (not `for_each = aws_s3_bucket.this`) so that checkov can link it to its bucket.
#
#   raw       - source EEG recordings. THIS IS PATIENT DATA (clinical EEG with
#               subject identifiers in headers and file names): it must stay
#               private, encrypted with our key, TLS-only, versioned, and is
#               read-only to the workloads (see iam.tf).
#   processed - TFRecord shards written by the Beam preprocessing pipeline;
#               derived from patient data, so hardened the same way.
#   models    - checkpoints and exported models.

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Patient data stays in the region the operator chose (data residency, the scope of a BAA); S3 keeps each object in three or more zones and versioning guards against deletion. A replica region is the operator's decision.
  for_each = local.bucket_names

  bucket = each.value
  # Never let `terraform destroy` silently delete patient recordings or
  # trained models: a non-empty bucket must be emptied deliberately.
  force_destroy = false

  tags = { "eegfm.io/data" = each.key }
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.bucket_names

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    # Disables ACLs entirely; access is decided by IAM and bucket policy only.
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.bucket_names

  bucket                  = aws_s3_bucket.this[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.bucket_names

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
    # Per-bucket data keys cut KMS request costs for millions of small shards.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.bucket_names

  bucket = aws_s3_bucket.this[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = local.bucket_names

  bucket = aws_s3_bucket.this[each.key].id

  rule {
    # Interrupted uploads of large EDF files and checkpoints are billed as
    # storage but invisible in listings.
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Lifecycle rules apply to versions, so versioning must exist first.
  depends_on = [aws_s3_bucket_versioning.this]
}

locals {
  deny_insecure_transport = {
    for k, b in aws_s3_bucket.this : k => {
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [b.arn, "${b.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }
  }
}

# Patient data must never cross the network in clear text, even inside AWS:
# any request to the raw bucket without TLS is denied. The other buckets get
# the same rule because their contents are derived from it.
resource "aws_s3_bucket_policy" "this" {
  for_each = local.bucket_names

  bucket = aws_s3_bucket.this[each.key].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [local.deny_insecure_transport[each.key]]
  })

  # A policy put while the public access block is still being applied can
  # race with it; order them.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# Server access logs: every request to patient data (who, when, which object, from where)
# lands in the access-log bucket (audit.tf), beside CloudTrail's object-level data events.
resource "aws_s3_bucket_logging" "this" {
  for_each = local.bucket_names

  bucket        = aws_s3_bucket.this[each.key].id
  target_bucket = aws_s3_bucket.audit["access_logs"].id
  target_prefix = "s3/${each.key}/"

  # The log bucket must accept the logging service's writes before S3 tests delivery.
  depends_on = [aws_s3_bucket_policy.audit]
}

# Object events go to EventBridge, where a rule can start the preprocessing job when new
# recordings arrive; without a rule they cost nothing.
resource "aws_s3_bucket_notification" "this" {
  for_each = local.bucket_names

  bucket      = aws_s3_bucket.this[each.key].id
  eventbridge = true
}
