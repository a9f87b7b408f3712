# Each role here is assumed by one AWS service. EKS (and Pod Identity) also tag the session;
# EC2 instance profiles cannot, so the node role allows AssumeRole alone.
locals {
  assumed_by = {
    for service in ["eks.amazonaws.com", "ec2.amazonaws.com", "pods.eks.amazonaws.com"] : service => jsonencode({
      Version = "2012-10-17"
      Statement = [{
        Effect    = "Allow"
        Principal = { Service = service }
        Action    = service == "ec2.amazonaws.com" ? ["sts:AssumeRole"] : ["sts:AssumeRole", "sts:TagSession"]
      }]
    })
  }
}

# ---------------------------------------------------------------------------
# EKS control plane role
# ---------------------------------------------------------------------------

resource "aws_iam_role" "cluster" {
  name               = "${var.name_prefix}-eks-cluster"
  assume_role_policy = local.assumed_by["eks.amazonaws.com"]
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

# AmazonEKSClusterPolicy does not cover envelope encryption of secrets with a
# customer key; without this the cluster creation fails.
resource "aws_iam_role_policy" "cluster_encryption" {
  name = "secrets-encryption"
  role = aws_iam_role.cluster.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"]
      Resource = aws_kms_key.cluster.arn
    }]
  })
}

# ---------------------------------------------------------------------------
# Node role (both node groups)
# ---------------------------------------------------------------------------

resource "aws_iam_role" "node" {
  name               = "${var.name_prefix}-eks-node"
  assume_role_policy = local.assumed_by["ec2.amazonaws.com"]
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
  ])

  role       = aws_iam_role.node.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/${each.value}"
}

# ---------------------------------------------------------------------------
# EBS CSI driver role (add-on's controller, bound through EKS Pod Identity)
# ---------------------------------------------------------------------------

resource "aws_iam_role" "ebs_csi" {
  name               = "${var.name_prefix}-ebs-csi"
  assume_role_policy = local.assumed_by["pods.eks.amazonaws.com"]
}

resource "aws_iam_role_policy_attachment" "ebs_csi" {
  role       = aws_iam_role.ebs_csi.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
}

# ---------------------------------------------------------------------------
# Workload (pod) role, bound through EKS Pod Identity
# ---------------------------------------------------------------------------

# Pod Identity rather than IRSA: no OIDC provider (and no thumbprint lookup)
# to manage, and the binding to namespace/service account lives in an EKS
# API object instead of a hand-written trust-policy condition.
resource "aws_iam_role" "pod" {
  name               = "${var.name_prefix}-pod-s3"
  assume_role_policy = local.assumed_by["pods.eks.amazonaws.com"]
}

locals {
  bucket_arn = { for k, b in aws_s3_bucket.this : k => b.arn }
  # Buckets the workloads write: pipeline output and checkpoints. Raw EEG is
  # read-only to the cluster so a bug in a job cannot alter source recordings.
  writable_buckets = ["processed", "models"]
}

resource "aws_iam_policy" "pod_s3" {
  name        = "${var.name_prefix}-pod-s3"
  description = "eegfm workloads: read raw EEG, read/write processed TFRecords and models"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ListBuckets"
        Effect   = "Allow"
        Action   = ["s3:ListBucket", "s3:GetBucketLocation"]
        Resource = values(local.bucket_arn)
      },
      {
        Sid      = "ReadRaw"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:GetObjectVersion"]
        Resource = "${local.bucket_arn["raw"]}/*"
      },
      {
        Sid      = "ListMultipartWritable"
        Effect   = "Allow"
        Action   = ["s3:ListBucketMultipartUploads"]
        Resource = [for k in local.writable_buckets : local.bucket_arn[k]]
      },
      {
        Sid    = "ReadWriteProcessedAndModels"
        Effect = "Allow"
        Action = [
          "s3:GetObject",
          "s3:GetObjectVersion",
          "s3:PutObject",
          "s3:DeleteObject",
          "s3:AbortMultipartUpload",
          "s3:ListMultipartUploadParts",
        ]
        Resource = [for k in local.writable_buckets : "${local.bucket_arn[k]}/*"]
      },
      {
        # Only through S3: the pods have no business using the key directly.
        Sid      = "UseDataKeyViaS3"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = aws_kms_key.data.arn
        Condition = {
          StringEquals = { "kms:ViaService" = "s3.${var.region}.amazonaws.com" }
        }
      },
    ]
  })
}

resource "aws_iam_role_policy_attachment" "pod_s3" {
  role       = aws_iam_role.pod.name
  policy_arn = aws_iam_policy.pod_s3.arn
}

resource "aws_eks_pod_identity_association" "eegfm" {
  cluster_name    = aws_eks_cluster.this.name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.pod.arn

  # The association is inert until the agent add-on runs on the nodes.
  depends_on = [aws_eks_addon.before_compute]
}

# ---------------------------------------------------------------------------
# Audit log delivery: CloudTrail and VPC flow logs into their log groups
# ---------------------------------------------------------------------------

locals {
  # service => the log group it writes; the trust policy names this account as the source
  # so that no other account's trail or flow log can borrow the role.
  log_delivery = {
    trail_logs = { service = "cloudtrail.amazonaws.com", log_group = aws_cloudwatch_log_group.trail.arn }
    flow_logs  = { service = "vpc-flow-logs.amazonaws.com", log_group = aws_cloudwatch_log_group.flow.arn }
  }
}

resource "aws_iam_role" "log_delivery" {
  for_each = local.log_delivery

  name = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = each.value.service }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy" "log_delivery" {
  for_each = local.log_delivery

  name = "write-log-group"
  role = aws_iam_role.log_delivery[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
        Resource = ["${each.value.log_group}:*"]
      },
      {
        # The flow-log service looks its group up before it delivers; the action takes no
        # narrower resource than the account's log groups in the region.
        Effect   = "Allow"
        Action   = ["logs:DescribeLogGroups"]
        Resource = ["${local.log_group_arn}:*"]
      },
    ]
  })
}
