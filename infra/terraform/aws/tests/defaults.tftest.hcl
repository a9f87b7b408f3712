# Plans the stack with its defaults against a mocked AWS provider (offline, no
# credentials) and checks the properties eegfm relies on.

mock_provider "aws" {
  # Computed attributes are normally unknown during plan; mock them so that the
  # policies built from ARNs can be decoded and inspected.
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
  target          = aws_kms_key.data
  override_during = plan
  values = {
    arn    = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-00000000da7a"
    key_id = "00000000-0000-0000-0000-00000000da7a"
  }
}

override_resource {
  target          = aws_kms_key.cluster
  override_during = plan
  values = {
    arn    = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-0000000c1057"
    key_id = "00000000-0000-0000-0000-0000000c1057"
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
  target          = aws_s3_bucket.this["processed"]
  override_during = plan
  values = {
    arn = "arn:aws:s3:::eegfm-processed-123456789012"
    id  = "eegfm-processed-123456789012"
  }
}

override_resource {
  target          = aws_s3_bucket.this["models"]
  override_during = plan
  values = {
    arn = "arn:aws:s3:::eegfm-models-123456789012"
    id  = "eegfm-models-123456789012"
  }
}

override_resource {
  target          = aws_iam_role.pod
  override_during = plan
  values = {
    arn = "arn:aws:iam::123456789012:role/eegfm-pod-s3"
  }
}

override_resource {
  target          = aws_iam_role.ebs_csi
  override_during = plan
  values = {
    arn = "arn:aws:iam::123456789012:role/eegfm-ebs-csi"
  }
}

run "network_spans_two_azs_with_elb_tags" {
  command = plan

  assert {
    condition     = aws_vpc.this.cidr_block == "10.42.0.0/16"
    error_message = "VPC must default to 10.42.0.0/16."
  }

  assert {
    condition     = length(aws_subnet.public) == 2 && length(aws_subnet.private) == 2
    error_message = "One public and one private subnet per availability zone expected."
  }

  assert {
    condition     = [for s in aws_subnet.private : s.availability_zone] == ["us-east-1a", "us-east-1b"]
    error_message = "Private subnets must be spread across the configured availability zones."
  }

  assert {
    condition     = alltrue([for s in aws_subnet.public : s.tags["kubernetes.io/role/elb"] == "1"])
    error_message = "Public subnets need the kubernetes.io/role/elb tag for internet-facing load balancers."
  }

  assert {
    condition     = alltrue([for s in aws_subnet.private : s.tags["kubernetes.io/role/internal-elb"] == "1"])
    error_message = "Private subnets need the kubernetes.io/role/internal-elb tag for internal load balancers."
  }

  assert {
    condition     = length(distinct(concat([for s in aws_subnet.public : s.cidr_block], [for s in aws_subnet.private : s.cidr_block]))) == 4
    error_message = "Subnet CIDRs must not collide."
  }

  assert {
    condition     = length(aws_default_security_group.this.ingress) == 0 && length(aws_default_security_group.this.egress) == 0
    error_message = "The VPC's default security group must allow nothing."
  }

  assert {
    condition     = aws_route.private_nat.destination_cidr_block == "0.0.0.0/0" && aws_eip.nat.domain == "vpc"
    error_message = "Private subnets must reach the internet through the NAT gateway."
  }
}

run "cluster_is_private_logged_and_encrypted" {
  command = plan

  assert {
    condition     = aws_eks_cluster.this.name == "eegfm" && aws_eks_cluster.this.version == "1.32"
    error_message = "Cluster must be named after name_prefix and default to Kubernetes 1.32."
  }

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].endpoint_private_access == true && aws_eks_cluster.this.vpc_config[0].endpoint_public_access == false
    error_message = "With no public_access_cidrs, only the private API endpoint may be enabled."
  }

  assert {
    condition     = toset(aws_eks_cluster.this.enabled_cluster_log_types) == toset(["api", "audit", "authenticator", "controllerManager", "scheduler"])
    error_message = "Control-plane logging must cover every log type."
  }

  assert {
    condition     = aws_eks_cluster.this.encryption_config[0].provider[0].key_arn == aws_kms_key.cluster.arn && aws_eks_cluster.this.encryption_config[0].resources == toset(["secrets"])
    error_message = "Kubernetes secrets must be envelope-encrypted with the module's cluster KMS key."
  }

  assert {
    condition     = aws_cloudwatch_log_group.cluster.name == "/aws/eks/eegfm/cluster" && aws_cloudwatch_log_group.cluster.retention_in_days == 365
    error_message = "Cluster log group must be /aws/eks/<name>/cluster with a year's retention by default."
  }

  assert {
    condition     = contains([for a in aws_iam_role_policy_attachment.cluster[*] : a.policy_arn], "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy")
    error_message = "Cluster role must carry AmazonEKSClusterPolicy."
  }

  assert {
    condition = toset(concat(
      [for a in aws_eks_addon.before_compute : a.addon_name],
      [for a in aws_eks_addon.after_compute : a.addon_name],
      [aws_eks_addon.ebs_csi.addon_name],
    )) == toset(["vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "metrics-server", "aws-ebs-csi-driver"])
    error_message = "Add-ons vpc-cni, coredns, kube-proxy, eks-pod-identity-agent, metrics-server and aws-ebs-csi-driver expected."
  }

  assert {
    condition = anytrue([for p in aws_eks_addon.ebs_csi.pod_identity_association :
    p.service_account == "ebs-csi-controller-sa" && p.role_arn == "arn:aws:iam::123456789012:role/eegfm-ebs-csi"])
    error_message = "The EBS CSI controller must get its own role through Pod Identity."
  }

  assert {
    condition     = aws_iam_role_policy_attachment.ebs_csi.policy_arn == "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
    error_message = "The EBS CSI role must carry AmazonEBSCSIDriverPolicy."
  }
}

run "node_groups" {
  command = plan

  assert {
    condition     = aws_eks_node_group.gpu.ami_type == "AL2023_x86_64_NVIDIA" && aws_eks_node_group.gpu.instance_types == tolist(["g5.2xlarge"])
    error_message = "GPU node group must use the AL2023 NVIDIA AMI on g5.2xlarge by default."
  }

  assert {
    condition = anytrue([for t in aws_eks_node_group.gpu.taint :
    t.key == "nvidia.com/gpu" && t.value == "present" && t.effect == "NO_SCHEDULE"])
    error_message = "GPU nodes must be tainted nvidia.com/gpu=present:NoSchedule."
  }

  assert {
    condition     = aws_eks_node_group.gpu.labels["eegfm.io/accelerator"] == "nvidia"
    error_message = "GPU nodes must be labelled eegfm.io/accelerator=nvidia."
  }

  assert {
    condition     = aws_eks_node_group.gpu.scaling_config[0].min_size == 0
    error_message = "GPU node group must be able to scale to zero."
  }

  assert {
    condition     = aws_eks_node_group.gpu.capacity_type == "ON_DEMAND" && aws_eks_node_group.gpu.disk_size == 200
    error_message = "GPU node group defaults: ON_DEMAND capacity and 200 GB disks."
  }

  assert {
    condition     = aws_eks_node_group.system.instance_types == tolist(["m6i.xlarge"]) && aws_eks_node_group.system.scaling_config[0].min_size == 1 && aws_eks_node_group.system.scaling_config[0].max_size == 3
    error_message = "System node group must default to m6i.xlarge with 1-3 nodes."
  }

  assert {
    condition     = length(aws_eks_node_group.system.taint) == 0
    error_message = "System nodes must stay untainted so ordinary pods schedule there."
  }

  assert {
    condition = toset([for a in aws_iam_role_policy_attachment.node : a.policy_arn]) == toset([
      "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
      "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
      "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    ])
    error_message = "Node role must carry exactly the worker, CNI and ECR read-only managed policies."
  }
}

run "vpc_cni_enforces_network_policies" {
  command = plan

  assert {
    condition     = jsondecode(aws_eks_addon.before_compute["vpc-cni"].configuration_values).enableNetworkPolicy == "true"
    error_message = "The VPC CNI must run its network policy agent, or the NetworkPolicies of infra/kubernetes are ignored."
  }
}

run "buckets_are_private_and_kms_encrypted" {
  command = plan

  assert {
    condition     = toset(keys(aws_s3_bucket.this)) == toset(["raw", "processed", "models"])
    error_message = "Buckets raw, processed and models expected."
  }

  assert {
    condition     = aws_s3_bucket.this["raw"].bucket == "eegfm-raw-123456789012"
    error_message = "Bucket names must be <name_prefix>-<purpose>-<account_id>."
  }

  assert {
    condition = alltrue([for k, c in aws_s3_bucket_server_side_encryption_configuration.this :
      one(one(c.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms" &&
    one(one(c.rule).apply_server_side_encryption_by_default).kms_master_key_id == aws_kms_key.data.arn])
    error_message = "Every bucket must default to SSE-KMS with the module's data key."
  }

  assert {
    condition     = length(aws_s3_bucket_server_side_encryption_configuration.this) == 3
    error_message = "Every bucket needs an encryption configuration."
  }

  assert {
    condition     = aws_kms_key.data.enable_key_rotation && aws_kms_key.cluster.enable_key_rotation
    error_message = "Customer KMS keys must rotate."
  }

  assert {
    condition = length(aws_s3_bucket_public_access_block.this) == 3 && alltrue([for k, b in aws_s3_bucket_public_access_block.this :
    b.block_public_acls && b.block_public_policy && b.ignore_public_acls && b.restrict_public_buckets])
    error_message = "Every bucket must set all four public access block flags."
  }

  assert {
    condition     = alltrue([for k, v in aws_s3_bucket_versioning.this : v.versioning_configuration[0].status == "Enabled"]) && length(aws_s3_bucket_versioning.this) == 3
    error_message = "Every bucket must be versioned."
  }

  assert {
    condition     = alltrue([for k, o in aws_s3_bucket_ownership_controls.this : o.rule[0].object_ownership == "BucketOwnerEnforced"]) && length(aws_s3_bucket_ownership_controls.this) == 3
    error_message = "Every bucket must disable ACLs (BucketOwnerEnforced)."
  }

  assert {
    condition = length(aws_s3_bucket_lifecycle_configuration.this) == 3 && alltrue([for k, l in aws_s3_bucket_lifecycle_configuration.this :
    anytrue([for r in l.rule : r.status == "Enabled" && r.abort_incomplete_multipart_upload[0].days_after_initiation == 7])])
    error_message = "Every bucket must abort incomplete multipart uploads after 7 days."
  }

  assert {
    condition     = alltrue([for b in aws_s3_bucket.this : b.force_destroy == false])
    error_message = "Buckets must not be force-destroyable (patient data, trained models)."
  }
}

run "raw_bucket_denies_plain_http" {
  command = plan

  assert {
    condition = anytrue([for s in jsondecode(aws_s3_bucket_policy.this["raw"].policy).Statement :
      s.Effect == "Deny" && s.Principal == "*" && s.Action == "s3:*" &&
      s.Condition.Bool["aws:SecureTransport"] == "false" &&
      contains(s.Resource, "arn:aws:s3:::eegfm-raw-123456789012") &&
    contains(s.Resource, "arn:aws:s3:::eegfm-raw-123456789012/*")])
    error_message = "The raw bucket policy must deny every non-TLS request to the bucket and its objects."
  }

  assert {
    condition     = aws_s3_bucket_policy.this["raw"].bucket == aws_s3_bucket.this["raw"].id
    error_message = "The TLS-only policy must be attached to the raw bucket."
  }
}

run "ecr_is_immutable_scanned_and_pruned" {
  command = plan

  assert {
    condition     = aws_ecr_repository.eegfm.name == "eegfm" && aws_ecr_repository.eegfm.image_tag_mutability == "IMMUTABLE"
    error_message = "ECR repository eegfm must have IMMUTABLE tags."
  }

  assert {
    condition     = aws_ecr_repository.eegfm.image_scanning_configuration[0].scan_on_push
    error_message = "Images must be scanned on push."
  }

  assert {
    condition     = aws_ecr_repository.eegfm.encryption_configuration[0].encryption_type == "KMS" && aws_ecr_repository.eegfm.encryption_configuration[0].kms_key == aws_kms_key.data.arn
    error_message = "ECR must be encrypted with the module's KMS key."
  }

  assert {
    condition = (
      jsondecode(aws_ecr_lifecycle_policy.eegfm.policy).rules[0].selection.countType == "imageCountMoreThan" &&
      jsondecode(aws_ecr_lifecycle_policy.eegfm.policy).rules[0].selection.countNumber == 30 &&
      jsondecode(aws_ecr_lifecycle_policy.eegfm.policy).rules[0].action.type == "expire"
    )
    error_message = "ECR lifecycle policy must keep the last 30 images."
  }
}

run "pod_identity_grants_least_privilege_s3" {
  command = plan

  assert {
    condition     = aws_eks_pod_identity_association.eegfm.namespace == "eegfm" && aws_eks_pod_identity_association.eegfm.service_account == "eegfm"
    error_message = "Pod identity must bind namespace eegfm / service account eegfm."
  }

  assert {
    condition     = aws_eks_pod_identity_association.eegfm.role_arn == "arn:aws:iam::123456789012:role/eegfm-pod-s3"
    error_message = "Pod identity must hand out the pod S3 role."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_iam_role.pod.assume_role_policy).Statement :
      s.Effect == "Allow" && s.Principal.Service == "pods.eks.amazonaws.com" &&
    toset(s.Action) == toset(["sts:AssumeRole", "sts:TagSession"])])
    error_message = "Pod role must be assumable by pods.eks.amazonaws.com with sts:AssumeRole and sts:TagSession."
  }

  # No statement may allow writes to the raw bucket.
  assert {
    condition = alltrue([for s in jsondecode(aws_iam_policy.pod_s3.policy).Statement :
      !(contains(flatten([s.Resource]), "arn:aws:s3:::eegfm-raw-123456789012/*") &&
    length(setintersection(toset(flatten([s.Action])), toset(["s3:PutObject", "s3:DeleteObject", "s3:*"]))) > 0)])
    error_message = "Workloads must not be able to write or delete raw EEG."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_iam_policy.pod_s3.policy).Statement :
      contains(flatten([s.Action]), "s3:PutObject") &&
      toset(flatten([s.Resource])) == toset(["arn:aws:s3:::eegfm-processed-123456789012/*", "arn:aws:s3:::eegfm-models-123456789012/*"])
    ])
    error_message = "Workloads must be able to write the processed and models buckets (and only those)."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_iam_policy.pod_s3.policy).Statement :
      contains(flatten([s.Resource]), "arn:aws:s3:::eegfm-raw-123456789012/*") && contains(flatten([s.Action]), "s3:GetObject")
    ])
    error_message = "Workloads must be able to read raw EEG."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_iam_policy.pod_s3.policy).Statement :
      s.Resource == aws_kms_key.data.arn && toset(s.Action) == toset(["kms:Decrypt", "kms:GenerateDataKey"])
    ])
    error_message = "Workloads need kms:Decrypt and kms:GenerateDataKey on the data key (only)."
  }

  assert {
    condition     = alltrue([for s in jsondecode(aws_iam_policy.pod_s3.policy).Statement : s.Effect == "Allow" && !contains(flatten([s.Action]), "*") && !contains(flatten([s.Resource]), "*")])
    error_message = "Pod policy must not use wildcard actions or resources."
  }
}

run "outputs_feed_the_kubernetes_manifests" {
  command = plan

  assert {
    condition     = output.kubeconfig_command == "aws eks update-kubeconfig --region us-east-1 --name eegfm"
    error_message = "kubeconfig_command must be the aws eks update-kubeconfig command for the cluster."
  }

  assert {
    condition     = output.namespace == "eegfm" && output.region == "us-east-1"
    error_message = "namespace and region outputs must reflect the inputs."
  }

  assert {
    condition = output.configmap_data == {
      AWS_REGION       = "us-east-1"
      RAW_BUCKET       = "eegfm-raw-123456789012"
      PROCESSED_BUCKET = "eegfm-processed-123456789012"
      MODELS_BUCKET    = "eegfm-models-123456789012"
    }
    error_message = "configmap_data must map AWS_REGION and RAW_BUCKET/PROCESSED_BUCKET/MODELS_BUCKET to the region and bucket names."
  }
}
