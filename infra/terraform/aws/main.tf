data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id   = data.aws_caller_identity.current.account_id
  partition    = data.aws_partition.current.partition
  cluster_name = var.name_prefix

  # The EKS control plane writes to this exact name; creating it ourselves
  # keeps retention and encryption under Terraform's control.
  cluster_log_group_name = "/aws/eks/${local.cluster_name}/cluster"
  trail_log_group_name   = "/aws/cloudtrail/${var.name_prefix}"
  flow_log_group_name    = "/aws/vpc/${var.name_prefix}/flow-logs"

  # Account ID suffix: S3 bucket names are global, the prefix alone collides.
  bucket_names = {
    raw       = "${var.name_prefix}-raw-${local.account_id}"
    processed = "${var.name_prefix}-processed-${local.account_id}"
    models    = "${var.name_prefix}-models-${local.account_id}"
  }
  audit_bucket_names = {
    trail       = "${var.name_prefix}-audit-trail-${local.account_id}"
    access_logs = "${var.name_prefix}-access-logs-${local.account_id}"
  }
}
