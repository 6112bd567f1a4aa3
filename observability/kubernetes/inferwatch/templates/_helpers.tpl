{{/* Names, labels and the checks every template shares. */}}

{{/* The chart's name, or nameOverride. */}}
{{- define "inferwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object's name: fullnameOverride, else release name + chart name (once). */}}
{{- define "inferwatch.fullname" -}}
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

{{- define "inferwatch.collectorName" -}}
{{- printf "%s-collector" (include "inferwatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "inferwatch.dashboardsName" -}}
{{- printf "%s-dashboards" (include "inferwatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The model's name: OTEL_SERVICE_NAME, the job label through the collector. */}}
{{- define "inferwatch.serviceName" -}}
{{- default (include "inferwatch.fullname" .) .Values.serviceName }}
{{- end }}

{{- define "inferwatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "inferwatch.labels" -}}
helm.sh/chart: {{ include "inferwatch.chart" . }}
{{ include "inferwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "inferwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inferwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of the proxy's pods, and of the collector's. */}}
{{- define "inferwatch.proxySelectorLabels" -}}
{{ include "inferwatch.selectorLabels" . }}
app.kubernetes.io/component: proxy
{{- end }}

{{- define "inferwatch.collectorSelectorLabels" -}}
{{ include "inferwatch.selectorLabels" . }}
app.kubernetes.io/component: collector
{{- end }}

{{- define "inferwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "inferwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag of an image value; the repository is required, the tag defaults to appVersion. */}}
{{- define "inferwatch.image" -}}
{{- $image := index . 0 }}{{- $what := index . 1 }}{{- $chart := index . 2 }}
{{- $repository := required (printf "%s.image.repository: set it to the registry path where you pushed the %s image (docs/kubernetes.md, Images)" $what $what) $image.repository }}
{{- printf "%s:%s" $repository (default $chart.AppVersion $image.tag) }}
{{- end }}

{{/* The proxy's upstream: the model in the same pod, or the URL of a model server elsewhere. */}}
{{- define "inferwatch.upstream" -}}
{{- if eq .Values.mode "sidecar" }}
{{- printf "http://127.0.0.1:%v" .Values.model.port }}
{{- else }}
{{- required "upstream.url: set it to the model server's base URL (mode: separate), e.g. http://fraud-model.models.svc:5005" .Values.upstream.url }}
{{- end }}
{{- end }}

{{/* Combinations that would make the totals wrong or leave nothing scraped: refused with the reason. */}}
{{- define "inferwatch.checks" -}}
{{- if and (gt (int .Values.proxy.workers) 1) (ne .Values.monitoring.scrape "collector") }}
{{- fail "proxy.workers above 1 needs monitoring.scrape: collector: each worker counts its own requests, and a scrape of one pod's /metrics would see one worker's; through the collector every worker reports under its own instance and the sums are exact" }}
{{- end }}
{{- if eq (int .Values.proxy.port) (int .Values.proxy.metricsPort) }}
{{- fail "proxy.metricsPort must differ from proxy.port: /metrics has a port of its own, kept off the Service clients call" }}
{{- end }}
{{- if and (not .Values.collector.enabled) (eq .Values.monitoring.scrape "collector") }}
{{- fail "monitoring.scrape: collector needs collector.enabled: true (or scrape: proxy)" }}
{{- end }}
{{- end }}

{{/* The container security context every container gets: no root, no writes outside its volumes. */}}
{{- define "inferwatch.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Scheduling values shared by every pod. */}}
{{- define "inferwatch.scheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
