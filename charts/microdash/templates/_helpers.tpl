{{- define "microdash.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "microdash.labels" -}}
app.kubernetes.io/name: microdash-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "microdash.selector" -}}
app.kubernetes.io/name: microdash-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "microdash.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "microdash.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The agents' pod-discovery ClusterRole (get and list on pods), the only role the operator may bind.
*/}}
{{- define "microdash.agentClusterRole" -}}
{{ include "microdash.fullname" . }}-agent-pod-discovery
{{- end }}
