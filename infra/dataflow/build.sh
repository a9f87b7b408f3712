#!/usr/bin/env bash
# Build the launcher image and register the Flex Template spec in Cloud Storage.
#   infra/dataflow/build.sh PROJECT REGION gs://BUCKET/templates/eegfm-preprocess.json
# Needs gcloud (authenticated) and an Artifact Registry repository named eegfm in REGION.
set -euo pipefail
PROJECT=${1:?usage: build.sh PROJECT REGION GCS_TEMPLATE_PATH}
REGION=${2:?usage: build.sh PROJECT REGION GCS_TEMPLATE_PATH}
TEMPLATE=${3:?usage: build.sh PROJECT REGION GCS_TEMPLATE_PATH}
cd "$(dirname "$0")/../.."
IMAGE="$REGION-docker.pkg.dev/$PROJECT/eegfm/preprocess-launcher:$(git rev-parse --short HEAD)"
gcloud builds submit --project "$PROJECT" --region "$REGION" --tag "$IMAGE" \
  --config /dev/stdin . <<YAML
steps:
  - name: gcr.io/cloud-builders/docker
    args: [build, -f, infra/dataflow/Dockerfile, -t, $IMAGE, .]
images: [$IMAGE]
YAML
gcloud dataflow flex-template build "$TEMPLATE" --project "$PROJECT" \
  --image "$IMAGE" --sdk-language PYTHON --metadata-file infra/dataflow/metadata.json
echo "registered $TEMPLATE (image $IMAGE)"
