provider "aws" {
  region = var.region

  # Tags on every taggable resource make cost reports and clean-up of the
  # (expensive) GPU stack attributable to eegfm without per-resource upkeep.
  default_tags {
    tags = merge(var.tags, {
      project      = "eegfm"
      "managed-by" = "terraform"
    })
  }
}
