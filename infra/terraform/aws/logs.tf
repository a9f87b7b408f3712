resource "aws_cloudwatch_log_group" "cluster" {
  name              = local.cluster_log_group_name
  retention_in_days = var.log_retention_days
  # Audit logs name pods, service accounts and bucket-facing roles of a stack
  # that handles patient data: encrypt them with a key we control.
  kms_key_id = aws_kms_key.cluster.arn
}
