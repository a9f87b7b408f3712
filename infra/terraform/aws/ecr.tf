resource "aws_ecr_repository" "eegfm" {
  name = var.name_prefix
  # A tag always names the same image, so a deployed model server can be
  # traced back to the exact build (and cannot be swapped under a running job).
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.data.arn
  }
}

resource "aws_ecr_lifecycle_policy" "eegfm" {
  repository = aws_ecr_repository.eegfm.name
  # CUDA/TensorFlow images are several GB each; immutable tags mean every
  # build is a new image, so cap how many are stored.
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last ${var.ecr_keep_images} images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = var.ecr_keep_images
      }
      action = { type = "expire" }
    }]
  })
}
