{{- define "voicebot.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "voicebot.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include "voicebot.selector" (list . "triton") */}}
{{- define "voicebot.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "voicebot.tokenSecret" -}}
{{- .Values.apiToken.existingSecret | default (printf "%s-token" (include "voicebot.fullname" .)) -}}
{{- end -}}

{{- define "voicebot.storeSecret" -}}
{{- .Values.postgresql.external.existingSecret | default (printf "%s-store" (include "voicebot.fullname" .)) -}}
{{- end -}}

{{- define "voicebot.external" -}}
{{- if or .Values.postgresql.external.url .Values.postgresql.external.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "voicebot.bundledPostgres" -}}
{{- if and .Values.postgresql.bundled.enabled (not (include "voicebot.external" .)) -}}true{{- end -}}
{{- end -}}

{{/* Containers run as non-root, without privilege escalation or capabilities. */}}
{{- define "voicebot.containerSecurity" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* An orchestrator probe: GET a path on 127.0.0.1 with the bearer token; non-2xx fails. */}}
{{- define "voicebot.probe" -}}
import os, urllib.request as u; t = os.environ.get('VOICEBOT_API_TOKEN'); u.urlopen(u.Request('http://127.0.0.1:8080{{ . }}', headers={'Authorization': 'Bearer ' + t} if t else {}), timeout=4)
{{- end -}}
