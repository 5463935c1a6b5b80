#!/usr/bin/env bash
# Creates the tables and queues of template.yaml on the emulators (or any AWS account the
# standard AWS_* variables point at), named PREFIX-..., and prints the variables that point
# relay-local at them:
#
#   eval "$(localstack/bootstrap.sh webhook-relay)"
#   cargo run -p relay-local
#
# The definitions come from the code (crates/aws/src/dynamodb/schema.rs and
# QueueSpec::deployed); a test checks template.yaml declares the same.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
prefix="${1:-webhook-relay}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_ENDPOINT_URL_SQS="${AWS_ENDPOINT_URL_SQS:-http://127.0.0.1:4566}"
export AWS_ENDPOINT_URL_DYNAMODB="${AWS_ENDPOINT_URL_DYNAMODB:-http://127.0.0.1:5000}"
cargo run -q -p relay-local -- bootstrap --prefix "$prefix"
echo "export AWS_REGION=$AWS_REGION AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
echo "export AWS_ENDPOINT_URL_SQS=$AWS_ENDPOINT_URL_SQS AWS_ENDPOINT_URL_DYNAMODB=$AWS_ENDPOINT_URL_DYNAMODB"
