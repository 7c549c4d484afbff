{{/* The chart's name, or nameOverride. */}}
{{- define "robustness-gate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: fullnameOverride, else the release name when it already holds the chart name, else release-chart. */}}
{{- define "robustness-gate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "robustness-gate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "robustness-gate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "robustness-gate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "robustness-gate.labels" -}}
helm.sh/chart: {{ include "robustness-gate.chart" . }}
{{ include "robustness-gate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "robustness-gate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "robustness-gate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "robustness-gate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The least-privilege rules: exactly the API calls the operator makes. docs/helm.md explains each rule.
*/}}
{{- define "robustness-gate.rules" -}}
# kopf lists and watches gates; each gate's worker re-reads its gate before every step.
- apiGroups: ["robustness.dev"]
  resources: ["robustnessgates"]
  verbs: ["get", "list", "watch"]
# The analysis state, verdict and decision are written as a merge patch of the status subresource only.
- apiGroups: ["robustness.dev"]
  resources: ["robustnessgates/status"]
  verbs: ["get", "patch"]
# Events on the gates (the operator's and kopf's).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
# Argo Rollouts: read the target; promote (patch) and abort (patch of the status subresource).
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["get", "patch"]
- apiGroups: ["argoproj.io"]
  resources: ["rollouts/status"]
  verbs: ["patch"]
# Deployments: watch the targets and their ReplicaSets (baseline and revisions) instead of reading them at
# every step, read them again before acting, promote or undo by patch.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list", "watch"]
{{- with .Values.rbac.secretNames }}
# Prometheus credentials: only the Secrets named here (rbac.secretNames).
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: {{ toJson . }}
  verbs: ["get"]
{{- end }}
{{- end -}}
