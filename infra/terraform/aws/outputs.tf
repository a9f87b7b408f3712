output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint (private unless public_access_cidrs is set)."
  value       = aws_eks_cluster.this.endpoint
}

output "region" {
  description = "AWS region of the stack."
  value       = var.region
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig context for the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${aws_eks_cluster.this.name}"
}

output "ecr_repository_url" {
  description = "URL to tag and push the eegfm image to."
  value       = aws_ecr_repository.eegfm.repository_url
}

output "raw_bucket" {
  description = "S3 bucket of the raw EEG recordings (patient data; read-only to workloads). RAW_BUCKET in the eegfm ConfigMap."
  value       = aws_s3_bucket.this["raw"].id
}

output "processed_bucket" {
  description = "S3 bucket of the pipeline's TFRecord output. PROCESSED_BUCKET in the eegfm ConfigMap."
  value       = aws_s3_bucket.this["processed"].id
}

output "models_bucket" {
  description = "S3 bucket of checkpoints and exported models. MODELS_BUCKET in the eegfm ConfigMap."
  value       = aws_s3_bucket.this["models"].id
}

output "configmap_data" {
  description = "Data for the eegfm ConfigMap in infra/kubernetes/base (keys RAW_BUCKET, PROCESSED_BUCKET, MODELS_BUCKET, AWS_REGION)."
  value = {
    AWS_REGION       = var.region
    RAW_BUCKET       = aws_s3_bucket.this["raw"].id
    PROCESSED_BUCKET = aws_s3_bucket.this["processed"].id
    MODELS_BUCKET    = aws_s3_bucket.this["models"].id
  }
}

output "pod_role_arn" {
  description = "IAM role the eegfm service account receives through EKS Pod Identity."
  value       = aws_iam_role.pod.arn
}

output "namespace" {
  description = "Kubernetes namespace bound to the pod role."
  value       = aws_eks_pod_identity_association.eegfm.namespace
}

output "service_account" {
  description = "Kubernetes service account bound to the pod role."
  value       = aws_eks_pod_identity_association.eegfm.service_account
}

output "data_kms_key_arn" {
  description = "KMS key encrypting the S3 buckets and ECR images."
  value       = aws_kms_key.data.arn
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets the nodes run in."
  value       = aws_subnet.private[*].id
}
