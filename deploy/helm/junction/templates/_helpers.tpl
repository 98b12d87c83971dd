{{/* The chart's name. */}}
{{- define "junction.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the StatefulSet, the client Service and the pods' prefix. */}}
{{- define "junction.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "junction.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "junction.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The headless Service that gives each pod a stable DNS name. */}}
{{- define "junction.headless" -}}
{{- printf "%s-headless" (include "junction.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "junction.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "junction.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the pods. */}}
{{- define "junction.selectorLabels" -}}
app.kubernetes.io/name: {{ include "junction.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The Secret with the credentials, or none. */}}
{{- define "junction.secretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else if or .Values.auth.token .Values.auth.user }}
{{- include "junction.fullname" . }}
{{- end }}
{{- end }}

{{/*
Each pod's stable DNS name under the headless Service, one per line:
junction-0.junction-headless.NAMESPACE.svc.cluster.local and so on. NOTES.txt
prints them; they are what clustering's join addresses will be derived from.
*/}}
{{- define "junction.podAddresses" -}}
{{- $full := include "junction.fullname" . }}
{{- $headless := include "junction.headless" . }}
{{- range $i := until (int .Values.replicaCount) }}
{{ printf "%s-%d.%s.%s.svc.cluster.local" $full $i $headless $.Release.Namespace }}
{{- end }}
{{- end }}

{{/*
One TOML value. Helm reads every number in values as a float; the broker's
numbers are whole, so a whole float is written as an integer (toToml would write
1.048576e+06, which the broker refuses). Lists become arrays, maps inline tables.
*/}}
{{- define "junction.tomlValue" -}}
{{- $v := . }}
{{- if kindIs "map" $v }}
{{- $items := list }}
{{- range $k, $x := $v }}
{{- $items = append $items (printf "%s = %s" $k (include "junction.tomlValue" $x)) }}
{{- end }}
{{- printf "{ %s }" (join ", " $items) }}
{{- else if kindIs "slice" $v }}
{{- $items := list }}
{{- range $x := $v }}
{{- $items = append $items (include "junction.tomlValue" $x) }}
{{- end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else if kindIs "string" $v }}
{{- toJson $v }}
{{- else if kindIs "bool" $v }}
{{- ternary "true" "false" $v }}
{{- else if and (kindIs "float64" $v) (eq (float64 (int64 $v)) $v) }}
{{- int64 $v }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}

{{/* The configuration file: the user's `config` with the chart's listeners and data_dir. */}}
{{- define "junction.config" -}}
{{- $config := merge (dict
      "nats_listen" (printf ":%d" (int .Values.ports.nats))
      "mqtt_listen" (printf ":%d" (int .Values.ports.mqtt))
      "http_listen" (printf ":%d" (int .Values.ports.http))
      "data_dir" "/data") (deepCopy .Values.config) }}
# Rendered by the Helm chart from its values (config, ports); docs/configuration.md.
{{- range $k, $v := $config }}
{{- if not (kindIs "map" $v) }}
{{ $k }} = {{ include "junction.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := $config }}
{{- if kindIs "map" $v }}

[{{ $k }}]
{{- range $k2, $v2 := $v }}
{{ $k2 }} = {{ include "junction.tomlValue" $v2 }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
