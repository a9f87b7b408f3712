data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id   = data.aws_caller_identity.current.account_id
  partition    = data.aws_partition.current.partition
  cluster_name = var.name_prefix

  # The EKS control plane writes to this exact name; creating it ourselves
  # keeps retention and encryption under Terraform's control.
  cluster_log_group_name = "/aws/eks/${local.cluster_name}/cluster"

  # Account ID suffix: S3 bucket names are global, the prefix alone collides.
  bucket_names = {
    raw       = "${var.name_prefix}-raw-${local.account_id}"
    processed = "${var.name_prefix}-processed-${local.account_id}"
    models    = "${var.name_prefix}-models-${local.account_id}"
  }
}
