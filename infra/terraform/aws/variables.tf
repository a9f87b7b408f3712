# ---------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------

variable "region" {
  description = "AWS region for every resource in this stack (e.g. us-east-1)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$", var.region))
    error_message = "region must be an AWS region code such as \"us-east-1\" or \"eu-central-1\"."
  }
}

variable "name_prefix" {
  description = <<-EOT
    Prefix for every named resource (EKS cluster, node groups, IAM roles, ECR
    repository, S3 buckets). Bucket names append the account ID to stay globally
    unique, e.g. "<name_prefix>-raw-<account_id>".
  EOT
  type        = string
  default     = "eegfm"

  validation {
    # S3 bucket names are the strictest consumer: lowercase letters, digits and
    # hyphens only. 30 characters leaves room for "-processed-<account_id>".
    condition     = can(regex("^[a-z][a-z0-9-]{1,28}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-30 characters of lowercase letters, digits and hyphens ([a-z0-9-]), starting with a letter and not ending with a hyphen (e.g. \"eegfm\" or \"eegfm-dev\")."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource through the provider's default_tags (project and managed-by are always set)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Networking
# ---------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC. Private subnets get a quarter each (pods take VPC IPs with the VPC CNI), public subnets a /22-sized slice of the last quarter for a /16."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 20, false)
    error_message = "vpc_cidr must be a valid IPv4 CIDR block with a prefix length between /16 and /20 (e.g. \"10.42.0.0/16\")."
  }
}

variable "availability_zones" {
  description = "Availability zones (2 or 3, all in var.region) to spread the public and private subnets across. EKS requires subnets in at least two AZs."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 3
    error_message = "availability_zones must list 2 or 3 availability zones (EKS needs at least two), e.g. [\"us-east-1a\", \"us-east-1b\"]."
  }

  validation {
    condition     = length(distinct(var.availability_zones)) == length(var.availability_zones) && alltrue([for az in var.availability_zones : can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+[a-z]$", az))])
    error_message = "availability_zones must be distinct availability-zone names such as \"us-east-1a\" (region code followed by a zone letter)."
  }
}

# ---------------------------------------------------------------------------
# EKS control plane
# ---------------------------------------------------------------------------

variable "kubernetes_version" {
  description = "Kubernetes minor version of the EKS control plane and node groups (\"1.MINOR\")."
  type        = string
  default     = "1.32"

  validation {
    # The AL2023 NVIDIA AMI used by the GPU node group exists from 1.30 onwards.
    condition     = try(tonumber(regex("^1\\.([0-9]+)$", var.kubernetes_version)[0]) >= 30, false)
    error_message = "kubernetes_version must be a Kubernetes minor version of the form \"1.MINOR\" with MINOR >= 30 (e.g. \"1.32\")."
  }
}

variable "public_access_cidrs" {
  description = <<-EOT
    CIDR blocks allowed to reach the public Kubernetes API endpoint. The default,
    an empty list, turns the public endpoint off: the API is then reachable only
    from inside the VPC (VPN, bastion or peered network).
  EOT
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.public_access_cidrs : can(cidrhost(cidr, 0)) && cidr != "0.0.0.0/0"])
    error_message = "public_access_cidrs must contain only valid IPv4 CIDR blocks (e.g. \"203.0.113.0/24\") and must not contain \"0.0.0.0/0\"; use [] to disable the public endpoint."
  }
}

variable "cluster_admin_arns" {
  description = "IAM role or user ARNs granted cluster-admin through EKS access entries, in addition to the identity that creates the cluster."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.cluster_admin_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", arn))])
    error_message = "cluster_admin_arns must contain only IAM role or user ARNs such as \"arn:aws:iam::123456789012:role/platform-admin\"."
  }
}

variable "addon_versions" {
  description = "Optional pinned versions of the EKS add-ons, keyed by add-on name (vpc-cni, kube-proxy, eks-pod-identity-agent, coredns, metrics-server, aws-ebs-csi-driver). Unlisted add-ons get the default version for the cluster's Kubernetes version."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.addon_versions) : contains(["vpc-cni", "kube-proxy", "eks-pod-identity-agent", "coredns", "metrics-server", "aws-ebs-csi-driver"], name)])
    error_message = "addon_versions keys must be among \"vpc-cni\", \"kube-proxy\", \"eks-pod-identity-agent\", \"coredns\", \"metrics-server\" and \"aws-ebs-csi-driver\"."
  }
}

# ---------------------------------------------------------------------------
# Node groups
# ---------------------------------------------------------------------------

variable "system_instance_types" {
  description = "Instance types of the CPU \"system\" node group that runs the Beam DirectRunner jobs, HTTP serving and cluster add-ons."
  type        = list(string)
  default     = ["m6i.xlarge"]

  validation {
    condition     = length(var.system_instance_types) >= 1 && alltrue([for t in var.system_instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "system_instance_types must list at least one EC2 instance type such as \"m6i.xlarge\"."
  }
}

variable "system_min_size" {
  description = "Minimum number of CPU system nodes (at least 1: CoreDNS and serving live here)."
  type        = number
  default     = 1

  validation {
    condition     = var.system_min_size >= 1 && floor(var.system_min_size) == var.system_min_size
    error_message = "system_min_size must be a whole number >= 1."
  }
}

variable "system_desired_size" {
  description = "Desired number of CPU system nodes (between system_min_size and system_max_size)."
  type        = number
  default     = 2

  validation {
    condition     = var.system_desired_size >= 1 && floor(var.system_desired_size) == var.system_desired_size
    error_message = "system_desired_size must be a whole number >= 1."
  }
}

variable "system_max_size" {
  description = "Maximum number of CPU system nodes."
  type        = number
  default     = 3

  validation {
    condition     = var.system_max_size >= 1 && floor(var.system_max_size) == var.system_max_size
    error_message = "system_max_size must be a whole number >= 1."
  }
}

variable "gpu_instance_types" {
  description = "NVIDIA GPU instance types (x86_64) of the GPU node group used for pre-training and fine-tuning."
  type        = list(string)
  default     = ["g5.2xlarge"]

  validation {
    # NVIDIA x86_64 families only: g4ad (AMD) and g5g (Arm) do not run the
    # AL2023_x86_64_NVIDIA AMI.
    condition     = length(var.gpu_instance_types) >= 1 && alltrue([for t in var.gpu_instance_types : can(regex("^(g4dn|g[5-9]e?|gr6|p[3-9](d|dn|de|e|en)?(-[a-z0-9]+)?)\\.[0-9]*x?large$", t))])
    error_message = "gpu_instance_types must list at least one NVIDIA x86_64 GPU instance type (families g4dn, g5, g6, g6e, gr6, p3, p4d, p5, ...), e.g. \"g5.2xlarge\"."
  }
}

variable "gpu_ami_type" {
  description = <<-EOT
    AMI type of the GPU nodes. AL2023_x86_64_NVIDIA ships the NVIDIA driver and
    container toolkit but not the NVIDIA Kubernetes device plugin, which must then
    be deployed in the cluster; BOTTLEROCKET_x86_64_NVIDIA includes the plugin.
  EOT
  type        = string
  default     = "AL2023_x86_64_NVIDIA"

  validation {
    condition     = contains(["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"], var.gpu_ami_type)
    error_message = "gpu_ami_type must be \"AL2023_x86_64_NVIDIA\" or \"BOTTLEROCKET_x86_64_NVIDIA\"."
  }
}

variable "gpu_capacity_type" {
  description = "Purchasing option of the GPU nodes: ON_DEMAND, or SPOT (cheaper, may be reclaimed mid-training; keep checkpoints in the models bucket)."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.gpu_capacity_type)
    error_message = "gpu_capacity_type must be \"ON_DEMAND\" or \"SPOT\"."
  }
}

variable "gpu_min_size" {
  description = "Minimum number of GPU nodes. 0 lets the group scale to zero between training runs."
  type        = number
  default     = 0

  validation {
    condition     = var.gpu_min_size >= 0 && floor(var.gpu_min_size) == var.gpu_min_size
    error_message = "gpu_min_size must be a whole number >= 0."
  }
}

variable "gpu_desired_size" {
  description = "Desired number of GPU nodes (between gpu_min_size and gpu_max_size). Set to 0 to park the GPU group when not training."
  type        = number
  default     = 1

  validation {
    condition     = var.gpu_desired_size >= 0 && floor(var.gpu_desired_size) == var.gpu_desired_size
    error_message = "gpu_desired_size must be a whole number >= 0."
  }
}

variable "gpu_max_size" {
  description = "Maximum number of GPU nodes."
  type        = number
  default     = 2

  validation {
    condition     = var.gpu_max_size >= 1 && floor(var.gpu_max_size) == var.gpu_max_size
    error_message = "gpu_max_size must be a whole number >= 1."
  }
}

variable "gpu_disk_size_gb" {
  description = "Root volume size of each GPU node in GiB (container images with CUDA and TensorFlow are large)."
  type        = number
  default     = 200

  validation {
    condition     = var.gpu_disk_size_gb >= 100 && var.gpu_disk_size_gb <= 2000 && floor(var.gpu_disk_size_gb) == var.gpu_disk_size_gb
    error_message = "gpu_disk_size_gb must be a whole number between 100 and 2000."
  }
}

# ---------------------------------------------------------------------------
# Workload identity
# ---------------------------------------------------------------------------

variable "namespace" {
  description = "Kubernetes namespace of the eegfm workloads; the pod identity association binds the S3 role to a service account in it."
  type        = string
  default     = "eegfm"

  validation {
    condition     = length(var.namespace) <= 63 && can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a Kubernetes DNS-1123 label: at most 63 lowercase letters, digits or hyphens, starting and ending with a letter or digit (e.g. \"eegfm\")."
  }
}

variable "service_account" {
  description = "Kubernetes service account of the eegfm workloads that receives the S3 pod role."
  type        = string
  default     = "eegfm"

  validation {
    condition     = length(var.service_account) <= 253 && can(regex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", var.service_account))
    error_message = "service_account must be a Kubernetes DNS-1123 subdomain: lowercase letters, digits, '-' or '.', starting and ending with a letter or digit (e.g. \"eegfm\")."
  }
}

# ---------------------------------------------------------------------------
# Storage, registry, logs, keys
# ---------------------------------------------------------------------------

variable "ecr_keep_images" {
  description = "Number of most recent images the ECR lifecycle policy keeps."
  type        = number
  default     = 30

  validation {
    condition     = var.ecr_keep_images >= 1 && var.ecr_keep_images <= 1000 && floor(var.ecr_keep_images) == var.ecr_keep_images
    error_message = "ecr_keep_images must be a whole number between 1 and 1000."
  }
}

variable "log_retention_days" {
  description = "Retention in days of the CloudWatch log groups (EKS control plane, CloudTrail, VPC flow logs)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the CloudWatch Logs retention values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a destroyed KMS key is deleted; data encrypted with it is unrecoverable afterwards."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30 && floor(var.kms_deletion_window_days) == var.kms_deletion_window_days
    error_message = "kms_deletion_window_days must be a whole number between 7 and 30."
  }
}

variable "audit_log_retention_days" {
  description = "Days the audit buckets keep CloudTrail files and S3 access logs; the default is six years, the HIPAA documentation retention period (45 CFR 164.316(b)(2))."
  type        = number
  default     = 2192

  validation {
    condition     = var.audit_log_retention_days >= 365 && floor(var.audit_log_retention_days) == var.audit_log_retention_days
    error_message = "audit_log_retention_days must be a whole number of days, at least 365."
  }
}
