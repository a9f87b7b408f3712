# Non-default inputs pass through to the resources that use them.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "210987654321"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
}

run "gpu_spot_capacity_and_sizes_pass_through" {
  command = plan

  variables {
    gpu_capacity_type  = "SPOT"
    gpu_instance_types = ["g6.xlarge", "g5.xlarge"]
    gpu_min_size       = 0
    gpu_desired_size   = 0
    gpu_max_size       = 4
  }

  assert {
    condition     = aws_eks_node_group.gpu.capacity_type == "SPOT"
    error_message = "gpu_capacity_type = SPOT must reach the GPU node group."
  }

  assert {
    condition     = aws_eks_node_group.gpu.instance_types == tolist(["g6.xlarge", "g5.xlarge"])
    error_message = "gpu_instance_types must reach the GPU node group in order."
  }

  assert {
    condition = (
      aws_eks_node_group.gpu.scaling_config[0].min_size == 0 &&
      aws_eks_node_group.gpu.scaling_config[0].desired_size == 0 &&
      aws_eks_node_group.gpu.scaling_config[0].max_size == 4
    )
    error_message = "The GPU group must accept a desired size of zero (parked) and the configured maximum."
  }

  assert {
    condition     = aws_eks_node_group.system.capacity_type == "ON_DEMAND"
    error_message = "The system node group must stay on-demand when the GPU group uses spot."
  }
}

run "bottlerocket_gpu_ami_keeps_taint_and_label" {
  command = plan

  variables {
    gpu_ami_type = "BOTTLEROCKET_x86_64_NVIDIA"
  }

  assert {
    condition     = aws_eks_node_group.gpu.ami_type == "BOTTLEROCKET_x86_64_NVIDIA"
    error_message = "gpu_ami_type must reach the GPU node group."
  }

  assert {
    condition     = aws_eks_node_group.gpu.labels["eegfm.io/accelerator"] == "nvidia" && one(aws_eks_node_group.gpu.taint).key == "nvidia.com/gpu"
    error_message = "The GPU label and taint must not depend on the AMI type."
  }
}

run "public_endpoint_only_for_listed_cidrs" {
  command = plan

  variables {
    public_access_cidrs = ["203.0.113.0/24"]
  }

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].endpoint_public_access && aws_eks_cluster.this.vpc_config[0].endpoint_private_access
    error_message = "Setting public_access_cidrs must enable the public endpoint next to the private one."
  }

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].public_access_cidrs == toset(["203.0.113.0/24"])
    error_message = "The public endpoint must be restricted to public_access_cidrs."
  }
}

run "custom_prefix_region_and_three_azs" {
  command = plan

  variables {
    name_prefix        = "eegfm-dev"
    region             = "eu-central-1"
    availability_zones = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
    namespace          = "eegfm-dev"
    log_retention_days = 30
    cluster_admin_arns = ["arn:aws:iam::210987654321:role/platform-admin"]
  }

  assert {
    condition     = aws_eks_cluster.this.name == "eegfm-dev" && aws_s3_bucket.this["models"].bucket == "eegfm-dev-models-210987654321"
    error_message = "Names must follow name_prefix."
  }

  assert {
    condition     = length(aws_subnet.private) == 3 && length(aws_subnet.public) == 3
    error_message = "Three availability zones must give three public and three private subnets."
  }

  assert {
    condition     = aws_eks_pod_identity_association.eegfm.namespace == "eegfm-dev"
    error_message = "The pod identity association must use var.namespace."
  }

  assert {
    condition     = aws_cloudwatch_log_group.cluster.name == "/aws/eks/eegfm-dev/cluster" && aws_cloudwatch_log_group.cluster.retention_in_days == 30
    error_message = "The log group must follow the cluster name and log_retention_days."
  }

  assert {
    condition     = aws_vpc_endpoint.s3.service_name == "com.amazonaws.eu-central-1.s3"
    error_message = "The S3 gateway endpoint must be in the configured region."
  }

  assert {
    condition     = aws_eks_access_policy_association.admin["arn:aws:iam::210987654321:role/platform-admin"].access_scope[0].type == "cluster"
    error_message = "cluster_admin_arns must get cluster-wide admin access entries."
  }
}
