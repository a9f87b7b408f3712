# Two customer keys instead of one: the data key is usable by the workload pods
# (through S3), the cluster key only by the EKS control plane and CloudWatch
# Logs, so a compromised pod role cannot touch Kubernetes secrets.

resource "aws_kms_key" "data" {
  description             = "${var.name_prefix}: S3 buckets (raw EEG, processed TFRecords, models) and ECR images"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
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
      {
        # Without this the key could lock out the account itself.
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "ClusterLogGroup"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action = [
          "kms:Encrypt*",
          "kms:Decrypt*",
          "kms:ReEncrypt*",
          "kms:GenerateDataKey*",
          "kms:Describe*",
        ]
        Resource = "*"
        Condition = {
          ArnEquals = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${local.cluster_log_group_name}"
          }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "cluster" {
  name          = "alias/${var.name_prefix}-cluster"
  target_key_id = aws_kms_key.cluster.key_id
}
