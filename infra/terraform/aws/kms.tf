# Three customer keys instead of one: the data key is usable by the workload pods
# (through S3), the cluster key only by the EKS control plane and CloudWatch
# Logs, so a compromised pod role cannot touch Kubernetes secrets, and the audit
# key only by CloudTrail and CloudWatch Logs for the audit trail.

locals {
  # Without this statement a key could lock out the account itself; with it, IAM
  # policies decide which principals of the account may use the key.
  kms_account_administration = {
    Sid       = "AccountAdministration"
    Effect    = "Allow"
    Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
    Action    = "kms:*"
    Resource  = "*"
  }
  kms_log_actions = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
  log_group_arn   = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group"
}

resource "aws_kms_key" "data" {
  description             = "${var.name_prefix}: S3 buckets (raw EEG, processed TFRecords, models) and ECR images"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  # S3 and ECR use the key on behalf of IAM principals the account allows (iam.tf).
  policy = jsonencode({ Version = "2012-10-17", Statement = [local.kms_account_administration] })
}

resource "aws_kms_alias" "data" {
  name          = "alias/${var.name_prefix}-data"
  target_key_id = aws_kms_key.data.key_id
}

resource "aws_kms_key" "cluster" {
  description             = "${var.name_prefix}: EKS secrets envelope encryption and control-plane logs"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days

  # An explicit policy is needed because CloudWatch Logs is a service
  # principal: IAM policies alone cannot grant it key use.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      local.kms_account_administration,
      {
        Sid       = "ClusterLogGroup"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = local.kms_log_actions
        Resource  = "*"
        Condition = {
          ArnEquals = { "kms:EncryptionContext:aws:logs:arn" = "${local.log_group_arn}:${local.cluster_log_group_name}" }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "cluster" {
  name          = "alias/${var.name_prefix}-cluster"
  target_key_id = aws_kms_key.cluster.key_id
}

resource "aws_kms_key" "audit" {
  description             = "${var.name_prefix}: CloudTrail log files and the CloudTrail and VPC flow log groups"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      local.kms_account_administration,
      {
        # CloudTrail encrypts each log file with a data key of this key, for this trail only.
        Sid       = "CloudTrailEncrypt"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = ["kms:GenerateDataKey*", "kms:DescribeKey"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceArn" = local.trail_arn }
          StringLike   = { "kms:EncryptionContext:aws:cloudtrail:arn" = "arn:${local.partition}:cloudtrail:*:${local.account_id}:trail/*" }
        }
      },
      {
        Sid       = "AuditLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = local.kms_log_actions
        Resource  = "*"
        Condition = {
          ArnEquals = {
            "kms:EncryptionContext:aws:logs:arn" = [
              "${local.log_group_arn}:${local.trail_log_group_name}",
              "${local.log_group_arn}:${local.flow_log_group_name}",
            ]
          }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "audit" {
  name          = "alias/${var.name_prefix}-audit"
  target_key_id = aws_kms_key.audit.key_id
}
