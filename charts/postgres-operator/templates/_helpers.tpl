{{/*
Names and labels. They match Zalando's chart for the same release name and values, so a release
of Zalando's chart can be upgraded in place to this one.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "postgres-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* fullnameOverride, else the release name when it contains the name, else release-name. */}}
{{- define "postgres-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "postgres-operator.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* chart-version, as in helm.sh/chart. */}}
{{- define "postgres-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels every object gets. */}}
{{- define "postgres-operator.labels" -}}
app.kubernetes.io/name: {{ include "postgres-operator.name" . }}
helm.sh/chart: {{ include "postgres-operator.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The controller Deployment's selector (immutable: Zalando's). */}}
{{- define "postgres-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postgres-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The webhook's name and labels: a name of its own, so the controller's selector and Service never pick its pods. */}}
{{- define "postgres-operator.webhookName" -}}
{{- printf "%s-webhook" (include "postgres-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "postgres-operator.webhookSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-webhook" (include "postgres-operator.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "postgres-operator.webhookLabels" -}}
{{ include "postgres-operator.webhookSelectorLabels" . }}
helm.sh/chart: {{ include "postgres-operator.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: webhook
{{- end -}}

{{/* The controller's ServiceAccount; also the name of its ClusterRole and binding. */}}
{{- define "postgres-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "postgres-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The database pods' ServiceAccount, and the name of their ClusterRole. */}}
{{- define "postgres-operator.podServiceAccountName" -}}
{{- default "postgres-pod" .Values.podServiceAccount.name -}}
{{- end -}}

{{/* The database pods' PriorityClass when the chart creates it. */}}
{{- define "postgres-operator.podPriorityClassName" -}}
{{- default (printf "%s-pod" (include "postgres-operator.fullname" .)) .Values.podPriorityClassName.name -}}
{{- end -}}

{{/* registry/repository:tag of an image block; the tag defaults to the appVersion. */}}
{{- define "postgres-operator.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- $tag := default $root.Chart.AppVersion (toString (default "" $image.tag)) -}}
{{- if $image.registry -}}
{{- printf "%s/%s:%s" $image.registry $image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
The environment that tells both binaries where their configuration is, as Zalando's chart sets it.
*/}}
{{- define "postgres-operator.configEnv" -}}
{{- if eq .Values.configTarget "ConfigMap" }}
- name: CONFIG_MAP_NAME
  value: {{ include "postgres-operator.fullname" . }}
{{- else if eq .Values.configTarget "OperatorConfigurationCRD" }}
- name: POSTGRES_OPERATOR_CONFIGURATION_OBJECT
  value: {{ include "postgres-operator.fullname" . }}
{{- else }}
{{- fail (printf "configTarget must be ConfigMap or OperatorConfigurationCRD, not %q" (toString .Values.configTarget)) }}
{{- end }}
- name: OPERATOR_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- if .Values.enableJsonLogging }}
- name: ENABLE_JSON_LOGGING
  value: "true"
{{- end }}
{{- end -}}

{{/*
One option value in the ConfigMap's flat form: lists comma-joined, maps as comma-joined key:value
pairs, scalars as text. Unlike Zalando's chart, whole numbers never come out in exponent form, and
a map holding maps or lists (e.g. liveness_probe, which only an OperatorConfiguration can carry) is
written as JSON instead of unusable text.
*/}}
{{- define "postgres-operator.flatScalar" -}}
{{- $v := . -}}
{{- if and (kindIs "float64" $v) (eq (float64 (int64 $v)) $v) -}}
{{- int64 $v -}}
{{- else -}}
{{- toString $v -}}
{{- end -}}
{{- end -}}

{{- define "postgres-operator.flatValue" -}}
{{- $v := . -}}
{{- if kindIs "slice" $v -}}
{{- $items := list -}}
{{- range $v }}{{ $items = append $items (include "postgres-operator.flatScalar" .) }}{{ end -}}
{{- join "," $items -}}
{{- else if kindIs "map" $v -}}
{{- $nested := false -}}
{{- range $v }}{{ if or (kindIs "map" .) (kindIs "slice" .) }}{{ $nested = true }}{{ end }}{{ end -}}
{{- if $nested -}}
{{- toJson $v -}}
{{- else -}}
{{- $pairs := list -}}
{{- range $key, $value := $v }}{{ $pairs = append $pairs (printf "%s:%s" $key (include "postgres-operator.flatScalar" $value)) }}{{ end -}}
{{- join "," $pairs -}}
{{- end -}}
{{- else if kindIs "invalid" $v -}}
{{- else -}}
{{- include "postgres-operator.flatScalar" $v -}}
{{- end -}}
{{- end -}}

{{/* Which namespaces the webhook configurations cover. */}}
{{- define "postgres-operator.webhookMatch" -}}
namespaceSelector:
  {{- if .Values.webhook.namespaceSelector }}
  {{- toYaml .Values.webhook.namespaceSelector | nindent 2 }}
  {{- else }}
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: ["kube-system"]
  {{- end }}
{{- end -}}

{{/* The name of both webhook configurations (cluster-scoped, so the namespace is part of it). */}}
{{- define "postgres-operator.webhookConfigurationName" -}}
{{- printf "%s-%s" (include "postgres-operator.webhookName" .) .Release.Namespace | trunc 253 -}}
{{- end }}

{{/* The webhook's serving certificate Secret. */}}
{{- define "postgres-operator.webhookSecretName" -}}
{{- default (printf "%s-cert" (include "postgres-operator.webhookName" .)) .Values.webhook.tls.secretName -}}
{{- end }}

{{/* The webhook's TLS mode, refused when unknown. */}}
{{- define "postgres-operator.webhookTlsMode" -}}
{{- $mode := .Values.webhook.tls.mode -}}
{{- if not (has $mode (list "self-managed" "cert-manager" "secret")) -}}
{{- fail (printf "webhook.tls.mode: %q is not one of self-managed, cert-manager, secret" $mode) -}}
{{- end -}}
{{- $mode -}}
{{- end }}

{{/* The annotations of both webhook configurations: the user's, plus cert-manager's CA injection. */}}
{{- define "postgres-operator.webhookConfigurationAnnotations" -}}
{{- $annotations := deepCopy (default dict .Values.webhook.configurationAnnotations) -}}
{{- if eq (include "postgres-operator.webhookTlsMode" .) "cert-manager" -}}
{{- $_ := set $annotations "cert-manager.io/inject-ca-from" (printf "%s/%s" .Release.Namespace (include "postgres-operator.webhookName" .)) -}}
{{- end -}}
{{- with $annotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
