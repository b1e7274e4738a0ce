{{- define "lumen.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lumen.agentName" -}}
{{- printf "%s-agent" (include "lumen.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lumen.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "lumen.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lumen
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "lumen.serverSelector" -}}
app.kubernetes.io/name: lumen
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "lumen.agentSelector" -}}
app.kubernetes.io/name: lumen-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{/* "true" when the server reads a configuration file: client
certificates on OTLP, or a signal kept in a remote backend. */}}
{{- define "lumen.configFile" -}}
{{- or (and .Values.tls.enabled .Values.tls.clientCA) (ne .Values.storage.metrics.backend "local") (ne .Values.storage.logs.backend "local") (ne .Values.storage.traces.backend "local") -}}
{{- end -}}
