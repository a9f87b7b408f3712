# CPU nodes: Beam DirectRunner preprocessing jobs, HTTP serving, add-ons.
resource "aws_eks_node_group" "system" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "${var.name_prefix}-system"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = aws_subnet.private[*].id
  version         = var.kubernetes_version

  ami_type       = "AL2023_x86_64_STANDARD"
  capacity_type  = "ON_DEMAND"
  instance_types = var.system_instance_types
  disk_size      = 50

  scaling_config {
    min_size     = var.system_min_size
    desired_size = var.system_desired_size
    max_size     = var.system_max_size
  }

  update_config {
    max_unavailable = 1
  }

  labels = {
    "eegfm.io/pool" = "system"
  }

  lifecycle {
    precondition {
      condition     = var.system_min_size <= var.system_desired_size && var.system_desired_size <= var.system_max_size
      error_message = "system node sizes must satisfy system_min_size <= system_desired_size <= system_max_size."
    }
  }

  depends_on = [
    # Nodes cannot join (or be cleaned up on destroy) without these.
    aws_iam_role_policy_attachment.node,
    aws_eks_addon.before_compute,
  ]
}

# GPU nodes: pre-training and fine-tuning only. The taint keeps CPU pods off
# these expensive machines; GPU pods must tolerate nvidia.com/gpu and select
# eegfm.io/accelerator=nvidia.
resource "aws_eks_node_group" "gpu" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "${var.name_prefix}-gpu"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = aws_subnet.private[*].id
  version         = var.kubernetes_version

  # The AL2023 NVIDIA AMI ships the driver and container toolkit only: the
  # NVIDIA device plugin DaemonSet (tolerating the taint below) must run in
  # the cluster before nvidia.com/gpu becomes allocatable. Bottlerocket's
  # NVIDIA variant bundles the plugin.
  ami_type       = var.gpu_ami_type
  capacity_type  = var.gpu_capacity_type
  instance_types = var.gpu_instance_types
  disk_size      = var.gpu_disk_size_gb

  scaling_config {
    min_size     = var.gpu_min_size
    desired_size = var.gpu_desired_size
    max_size     = var.gpu_max_size
  }

  update_config {
    max_unavailable = 1
  }

  labels = {
    "eegfm.io/pool"        = "gpu"
    "eegfm.io/accelerator" = "nvidia"
  }

  taint {
    key    = "nvidia.com/gpu"
    value  = "present"
    effect = "NO_SCHEDULE"
  }

  lifecycle {
    precondition {
      condition     = var.gpu_min_size <= var.gpu_desired_size && var.gpu_desired_size <= var.gpu_max_size
      error_message = "GPU node sizes must satisfy gpu_min_size <= gpu_desired_size <= gpu_max_size."
    }
  }

  depends_on = [
    aws_iam_role_policy_attachment.node,
    aws_eks_addon.before_compute,
  ]
}
