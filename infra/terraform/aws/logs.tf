# CloudWatch log groups: the EKS control plane, CloudTrail's copy and the VPC flow logs. Each is
# created here, not by the service writing to it, so that retention and encryption are ours.

resource "aws_cloudwatch_log_group" "cluster" {
  name              = local.cluster_log_group_name
  retention_in_days = var.log_retention_days
  # Audit logs name pods, service accounts and bucket-facing roles of a stack
  # that handles patient data: encrypt them with a key we control.
  kms_key_id = aws_kms_key.cluster.arn
}

resource "aws_cloudwatch_log_group" "trail" {
  name              = local.trail_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.audit.arn
}

resource "aws_cloudwatch_log_group" "flow" {
  name              = local.flow_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.audit.arn
}

# Every accepted and rejected connection in the VPC (nodes, pods, NAT): who reached the
# cluster and where data left it.
resource "aws_flow_log" "vpc" {
  vpc_id                   = aws_vpc.this.id
  traffic_type             = "ALL"
  log_destination_type     = "cloud-watch-logs"
  log_destination          = aws_cloudwatch_log_group.flow.arn
  iam_role_arn             = aws_iam_role.log_delivery["flow_logs"].arn
  max_aggregation_interval = 600
}
