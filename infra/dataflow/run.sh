#!/usr/bin/env bash
# Launch the registered template on Dataflow:
#   infra/dataflow/run.sh PROJECT REGION gs://BUCKET/templates/eegfm-preprocess.json \
#     input=gs://BUCKET/raw/ output=gs://BUCKET/tfrecords pseudonym_key_file=gs://SECRET/pseudonym.key [name=value ...]
# Parameters are metadata.json's; Dataflow's own (max-workers, worker-machine-type ...) can be set
# with DATAFLOW_ARGS, e.g. DATAFLOW_ARGS="--max-workers=50 --worker-machine-type=n2-highmem-4".
set -euo pipefail
PROJECT=${1:?usage: run.sh PROJECT REGION GCS_TEMPLATE_PATH name=value ...}
REGION=${2:?usage: run.sh PROJECT REGION GCS_TEMPLATE_PATH name=value ...}
TEMPLATE=${3:?usage: run.sh PROJECT REGION GCS_TEMPLATE_PATH name=value ...}
shift 3
[ $# -gt 0 ] || { echo "run.sh: expected at least input=, output= and pseudonym_key_file=" >&2; exit 2; }
params=$(IFS=';'; echo "$*")
# shellcheck disable=SC2086
gcloud dataflow flex-template run "eegfm-preprocess-$(date +%Y%m%d-%H%M%S)" --project "$PROJECT" \
  --region "$REGION" --template-file-gcs-location "$TEMPLATE" --parameters "^;^$params" ${DATAFLOW_ARGS:-}
