# The audit trail (audit.tf, logs.tf): CloudTrail in every region with log file validation and
# the audit key, object-level events of the data buckets, S3 access logs, VPC flow logs.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
}

override_resource {
  target          = aws_kms_key.audit
  override_during = plan
  values = {
    arn    = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-0000000a0d17"
    key_id = "00000000-0000-0000-0000-0000000a0d17"
  }
}

override_resource {
  target          = aws_s3_bucket.this["raw"]
  override_during = plan
  values = {
    arn = "arn:aws:s3:::eegfm-raw-123456789012"
    id  = "eegfm-raw-123456789012"
  }
}

override_resource {
  target          = aws_s3_bucket.audit["trail"]
  override_during = plan
  values = {
    arn = "arn:aws:s3:::eegfm-audit-trail-123456789012"
    id  = "eegfm-audit-trail-123456789012"
  }
}

override_resource {
  target          = aws_s3_bucket.audit["access_logs"]
  override_during = plan
  values = {
    arn = "arn:aws:s3:::eegfm-access-logs-123456789012"
    id  = "eegfm-access-logs-123456789012"
  }
}

run "cloudtrail_covers_every_region_and_the_data_objects" {
  command = plan

  assert {
    condition     = aws_cloudtrail.this.is_multi_region_trail && aws_cloudtrail.this.include_global_service_events
    error_message = "The trail must record every region and the global services (IAM)."
  }

  assert {
    condition     = aws_cloudtrail.this.enable_log_file_validation
    error_message = "Log file validation (digest files) must be on, so tampering is detectable."
  }

  assert {
    condition     = aws_cloudtrail.this.kms_key_id == aws_kms_key.audit.arn && aws_cloudtrail.this.s3_bucket_name == "eegfm-audit-trail-123456789012"
    error_message = "The trail must write to the audit-trail bucket, encrypted with the audit key."
  }

  assert {
    condition     = contains(one(one(aws_cloudtrail.this.event_selector).data_resource).values, "arn:aws:s3:::eegfm-raw-123456789012/") && length(one(one(aws_cloudtrail.this.event_selector).data_resource).values) == 3
    error_message = "Object-level events must cover the raw, processed and models buckets."
  }

  assert {
    condition     = one(aws_cloudtrail.this.event_selector).read_write_type == "All"
    error_message = "Reads of patient data must be recorded, not only writes."
  }
}

run "trail_bucket_admits_this_trail_only" {
  command = plan

  assert {
    condition = alltrue([for s in jsondecode(aws_s3_bucket_policy.audit["trail"].policy).Statement :
      s.Condition.StringEquals["aws:SourceArn"] == "arn:aws:cloudtrail:us-east-1:123456789012:trail/eegfm-trail"
    if s.Effect == "Allow"])
    error_message = "CloudTrail may write to the trail bucket only on behalf of this trail."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_s3_bucket_policy.audit["trail"].policy).Statement :
    s.Effect == "Deny" && try(s.Condition.Bool["aws:SecureTransport"], "") == "false"])
    error_message = "The trail bucket must refuse plain HTTP."
  }

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.audit["trail"].rule).apply_server_side_encryption_by_default).kms_master_key_id == aws_kms_key.audit.arn
    error_message = "The trail bucket must default to the audit key."
  }
}

run "data_buckets_log_access" {
  command = plan

  assert {
    condition     = length(aws_s3_bucket_logging.this) == 3 && alltrue([for k, l in aws_s3_bucket_logging.this : l.target_bucket == "eegfm-access-logs-123456789012" && l.target_prefix == "s3/${k}/"])
    error_message = "Every data bucket must send its server access logs to the access-log bucket, under s3/<bucket key>/."
  }

  assert {
    condition     = aws_s3_bucket_logging.audit.bucket == "eegfm-audit-trail-123456789012" && aws_s3_bucket_logging.audit.target_bucket == "eegfm-access-logs-123456789012"
    error_message = "The trail bucket's own access must be logged too."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_s3_bucket_policy.audit["access_logs"].policy).Statement :
    s.Effect == "Allow" && try(s.Principal.Service, "") == "logging.s3.amazonaws.com" && try(s.Condition.StringEquals["aws:SourceAccount"], "") == "123456789012"])
    error_message = "Only S3 logging on behalf of this account may write to the access-log bucket."
  }
}

run "audit_buckets_keep_logs_six_years_by_default" {
  command = plan

  assert {
    condition = alltrue([for k, l in aws_s3_bucket_lifecycle_configuration.audit :
    one(one(l.rule).expiration).days == 2192])
    error_message = "Audit buckets must keep logs for six years by default."
  }

  assert {
    condition     = alltrue([for k, v in aws_s3_bucket_versioning.audit : v.versioning_configuration[0].status == "Enabled"]) && length(aws_s3_bucket_versioning.audit) == 2
    error_message = "Both audit buckets must be versioned."
  }

  assert {
    condition     = alltrue([for b in aws_s3_bucket.audit : b.force_destroy == false])
    error_message = "An audit bucket must outlive a destroy of the stack."
  }
}

run "vpc_flow_logs_record_all_traffic" {
  command = plan

  assert {
    condition     = aws_flow_log.vpc.traffic_type == "ALL" && aws_flow_log.vpc.log_destination_type == "cloud-watch-logs"
    error_message = "Flow logs must record accepted and rejected traffic to CloudWatch Logs."
  }

  assert {
    condition     = aws_cloudwatch_log_group.flow.kms_key_id == aws_kms_key.audit.arn && aws_cloudwatch_log_group.trail.kms_key_id == aws_kms_key.audit.arn
    error_message = "The flow-log and CloudTrail log groups must be encrypted with the audit key."
  }

  assert {
    condition     = aws_cloudwatch_log_group.flow.retention_in_days == 365 && aws_cloudwatch_log_group.trail.retention_in_days == 365
    error_message = "Audit log groups must keep a year of logs by default."
  }

  assert {
    condition     = alltrue([for role in aws_iam_role.log_delivery : one(jsondecode(role.assume_role_policy).Statement).Condition.StringEquals["aws:SourceAccount"] == "123456789012"])
    error_message = "The log delivery roles must be assumable only on behalf of this account."
  }
}

run "rejects_short_audit_retention" {
  command = plan
  variables {
    audit_log_retention_days = 90
  }
  expect_failures = [var.audit_log_retention_days]
}
