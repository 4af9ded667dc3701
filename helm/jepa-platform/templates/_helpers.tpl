{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "jepa-platform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of resource names: "<release>-<chart>", or the release name alone when it already contains
the chart name. Truncated to leave room for the "-submitter"/"-workload" suffixes.
*/}}
{{- define "jepa-platform.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jepa-platform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object; a template adds app.kubernetes.io/component. */}}
{{- define "jepa-platform.labels" -}}
helm.sh/chart: {{ include "jepa-platform.chart" . }}
app.kubernetes.io/name: {{ include "jepa-platform.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jepa-platform
{{- end }}

{{- define "jepa-platform.submitterServiceAccountName" -}}
{{- if .Values.submitter.serviceAccount.create }}
{{- default (printf "%s-submitter" (include "jepa-platform.fullname" .)) .Values.submitter.serviceAccount.name }}
{{- else }}
{{- required "submitter.serviceAccount.name is required when submitter.serviceAccount.create is false" .Values.submitter.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jepa-platform.workloadServiceAccountName" -}}
{{- if .Values.workload.serviceAccount.create }}
{{- default (printf "%s-workload" (include "jepa-platform.fullname" .)) .Values.workload.serviceAccount.name }}
{{- else }}
{{- required "workload.serviceAccount.name is required when workload.serviceAccount.create is false" .Values.workload.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The job image, "<repository>:<tag>", the tag defaulting to the chart's appVersion. */}}
{{- define "jepa-platform.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "jepa-platform.configMapName" -}}
{{- include "jepa-platform.fullname" . }}
{{- end }}
