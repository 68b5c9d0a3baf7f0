{{/* Names and labels shared by every manifest. */}}
{{- define "association-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "association-service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "association-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "association-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "association-service.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "association-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "association-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "association-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "association-service.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding what the chart generates or is given inline. */}}
{{- define "association-service.secretName" -}}
{{- printf "%s-secrets" (include "association-service.fullname" .) }}
{{- end }}

{{- define "association-service.usesPostgres" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{- define "association-service.databaseSecret" -}}
{{- default (include "association-service.secretName" .) .Values.database.existingSecret }}
{{- end }}

{{- define "association-service.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{- define "association-service.tokensSecret" -}}
{{- default (include "association-service.secretName" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "association-service.tokensSecretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}tokens.toml{{ end }}
{{- end }}

{{- define "association-service.cursorSecret" -}}
{{- default (include "association-service.secretName" .) .Values.cursorSecret.existingSecret }}
{{- end }}

{{- define "association-service.cursorSecretKey" -}}
{{- if .Values.cursorSecret.existingSecret }}{{ .Values.cursorSecret.existingSecretKey }}{{ else }}cursor-secret{{ end }}
{{- end }}

{{/* Environment every container running the binary gets: the store URL and the cursor secret. */}}
{{- define "association-service.env" -}}
{{- if include "association-service.usesPostgres" . }}
- name: ASSOC__STORE__URL
  valueFrom:
    secretKeyRef:
      name: {{ include "association-service.databaseSecret" . }}
      key: {{ include "association-service.databaseSecretKey" . }}
{{- end }}
- name: ASSOC__READ__CURSOR_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "association-service.cursorSecret" . }}
      key: {{ include "association-service.cursorSecretKey" . }}
{{- end }}

{{- define "association-service.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
