#!/usr/bin/env bash
# helm lint of charts/postgres-operator: default values, Zalando's default values file when it is
# next to the repository, and the variants that turn parts off.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

chart=$REPO_ROOT/charts/postgres-operator
"$HELM" lint --strict "$chart"
zalando=$REPO_ROOT/../shared/fixtures/zalando/chart-values.yaml
if [ -f "$zalando" ]; then
  "$HELM" lint "$chart" -f "$zalando"
fi
for variant in configTarget=ConfigMap webhook.enabled=false controller.enabled=false \
  rbac.createAggregateClusterRoles=true; do
  "$HELM" lint --quiet "$chart" --set "$variant"
done
