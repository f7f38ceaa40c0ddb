{{/* The release's name for its objects: the release name, cut to what Kubernetes allows. */}}
{{- define "daedalus.fullname" -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "daedalus.selectorLabels" -}}
app.kubernetes.io/name: cassandra
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "daedalus.labels" -}}
{{ include "daedalus.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "daedalus.image" -}}
{{ .Values.daedalus.image.repository }}:{{ .Values.daedalus.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The sidecar's containers run unprivileged, on a read-only root. */}}
{{- define "daedalus.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
