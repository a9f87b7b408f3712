# Daemon-set add-ons go in before the node groups so the first nodes come up
# with networking, kube-proxy and the pod identity agent already configured.
resource "aws_eks_addon" "before_compute" {
  for_each = toset(["vpc-cni", "kube-proxy", "eks-pod-identity-agent"])

  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = each.value
  addon_version               = lookup(var.addon_versions, each.value, null)
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "OVERWRITE"

  # The VPC CNI's network policy agent enforces infra/kubernetes' NetworkPolicies (deny
  # ingress by default; serve's port; the elastic job's pods to each other); without it they
  # are accepted and ignored.
  configuration_values = each.value == "vpc-cni" ? jsonencode({ enableNetworkPolicy = "true" }) : null
}

# Deployments only become ACTIVE once there are nodes to schedule them on, so
# these wait for the system node group. metrics-server backs the serving
# HorizontalPodAutoscaler in infra/kubernetes/serve.
resource "aws_eks_addon" "after_compute" {
  for_each = toset(["coredns", "metrics-server"])

  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = each.value
  addon_version               = lookup(var.addon_versions, each.value, null)
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "OVERWRITE"

  depends_on = [aws_eks_node_group.system]
}

# The gp3 StorageClass in infra/kubernetes/base provisions the training
# checkpoint volume through this driver.
resource "aws_eks_addon" "ebs_csi" {
  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = "aws-ebs-csi-driver"
  addon_version               = lookup(var.addon_versions, "aws-ebs-csi-driver", null)
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "OVERWRITE"

  # Its own role through Pod Identity, so the node role does not need EC2
  # volume permissions that every pod on the node could borrow.
  pod_identity_association {
    role_arn        = aws_iam_role.ebs_csi.arn
    service_account = "ebs-csi-controller-sa"
  }

  depends_on = [
    aws_eks_node_group.system,
    aws_iam_role_policy_attachment.ebs_csi,
  ]
}
