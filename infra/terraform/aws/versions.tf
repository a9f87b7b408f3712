terraform {
  # 1.7 is the floor for the module itself; the tests under tests/ use mock
  # overrides during plan (override_during), which need Terraform 1.11.
  required_version = ">= 1.7"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Pinned exactly: EKS/S3 argument shapes move between minor releases and
      # the tests are written against this schema.
      version = "5.100.0"
    }
  }

  # No backend is configured on purpose: state would otherwise be created in an
  # account the reader has not chosen yet. Use an S3 backend with locking in
  # any shared setup (see README.md), for example:
  #
  # backend "s3" {
  #   bucket       = "my-org-terraform-state"
  #   key          = "eegfm/aws/terraform.tfstate"
  #   region       = "us-east-1"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}
