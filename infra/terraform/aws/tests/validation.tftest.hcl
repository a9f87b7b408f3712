# Bad inputs must be refused at plan time, before anything is created.

mock_provider "aws" {
  # The provider still validates ARNs it is given, so the partition must be real.
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
}

run "rejects_uppercase_and_underscore_name_prefix" {
  command = plan
  variables {
    name_prefix = "EEG_FM"
  }
  expect_failures = [var.name_prefix]
}

run "rejects_too_short_name_prefix" {
  command = plan
  variables {
    name_prefix = "ee"
  }
  expect_failures = [var.name_prefix]
}

run "rejects_unknown_capacity_type" {
  command = plan
  variables {
    gpu_capacity_type = "CHEAP"
  }
  expect_failures = [var.gpu_capacity_type]
}

run "rejects_single_availability_zone" {
  command = plan
  variables {
    availability_zones = ["us-east-1a"]
  }
  expect_failures = [var.availability_zones]
}

run "rejects_duplicate_availability_zones" {
  command = plan
  variables {
    availability_zones = ["us-east-1a", "us-east-1a"]
  }
  expect_failures = [var.availability_zones]
}

run "rejects_zones_outside_the_region" {
  command = plan
  variables {
    availability_zones = ["eu-west-1a", "eu-west-1b"]
  }
  expect_failures = [aws_vpc.this]
}

run "rejects_old_kubernetes_version" {
  command = plan
  variables {
    kubernetes_version = "1.27"
  }
  expect_failures = [var.kubernetes_version]
}

run "rejects_open_public_endpoint" {
  command = plan
  variables {
    public_access_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.public_access_cidrs]
}

run "rejects_non_gpu_instance_type" {
  command = plan
  variables {
    gpu_instance_types = ["m6i.xlarge"]
  }
  expect_failures = [var.gpu_instance_types]
}

run "rejects_non_nvidia_gpu_ami_type" {
  command = plan
  variables {
    gpu_ami_type = "AL2023_x86_64_STANDARD"
  }
  expect_failures = [var.gpu_ami_type]
}

run "rejects_gpu_desired_below_min" {
  command = plan
  variables {
    gpu_min_size     = 2
    gpu_desired_size = 1
  }
  expect_failures = [aws_eks_node_group.gpu]
}

run "rejects_invalid_log_retention" {
  command = plan
  variables {
    log_retention_days = 42
  }
  expect_failures = [var.log_retention_days]
}

run "rejects_invalid_namespace" {
  command = plan
  variables {
    namespace = "EEG FM"
  }
  expect_failures = [var.namespace]
}

run "rejects_small_vpc_cidr" {
  command = plan
  variables {
    vpc_cidr = "10.42.0.0/24"
  }
  expect_failures = [var.vpc_cidr]
}
