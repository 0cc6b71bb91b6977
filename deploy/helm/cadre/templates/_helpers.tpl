{{/* Chart name, shortened to 63 characters (the DNS label limit). */}}
{{- define "cadre.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart> unless the release name already has it. */}}
{{- define "cadre.fullname" -}}
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

{{- define "cadre.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "cadre.labels" -}}
helm.sh/chart: {{ include "cadre.chart" . }}
{{ include "cadre.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cadre.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cadre.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cadre.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "cadre.configName" -}}
{{- printf "%s-config" (include "cadre.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cadre.storeSecretName" -}}
{{- if .Values.postgres.existingSecret }}
{{- .Values.postgres.existingSecret }}
{{- else }}
{{- printf "%s-store" (include "cadre.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Environment every cadre pod gets: its node id (the pod name), the address other nodes reach it
on (pod IP and gRPC port), the shared JWT key when one is given, and OTLP export when enabled.
*/}}
{{- define "cadre.commonEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: CADRE_NODE__ID
  value: "$(POD_NAME)"
- name: CADRE_NODE__ADVERTISE_ADDR
  value: "$(POD_IP):50051"
# The probe listener (plain HTTP, /health /ready /metrics only) on the pod IP for the kubelet:
# its probes work whatever [tls] says, client certificates required or not.
- name: CADRE_SERVER__PROBE_ADDR
  value: "0.0.0.0:8081"
{{- if .Values.auth.hs256Secret.existingSecret }}
- name: CADRE_AUTH__HS256_SECRET_FILE
  value: /etc/cadre/auth/{{ .Values.auth.hs256Secret.key }}
{{- end }}
{{- if .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otel.endpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: cadre
{{- end }}
{{- end }}

{{/*
Volumes every cadre pod mounts: the config, the data dir (an emptyDir: in distributed mode the
tasks live in PostgreSQL), /tmp (the root filesystem is read-only) and the shared JWT key.
*/}}
{{- define "cadre.volumes" -}}
- name: config
  configMap:
    name: {{ include "cadre.configName" . }}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if .Values.auth.hs256Secret.existingSecret }}
- name: auth
  secret:
    secretName: {{ .Values.auth.hs256Secret.existingSecret }}
    defaultMode: 0400
{{- end }}
{{- end }}

{{- define "cadre.volumeMounts" -}}
- name: config
  mountPath: /etc/cadre/cadre.toml
  subPath: cadre.toml
  readOnly: true
- name: data
  mountPath: /var/lib/cadre
- name: tmp
  mountPath: /tmp
{{- if .Values.auth.hs256Secret.existingSecret }}
- name: auth
  mountPath: /etc/cadre/auth
  readOnly: true
{{- end }}
{{- end }}

{{/* Container ports and the probes: liveness on /health, readiness on /ready, both on the
    plain-HTTP probe listener (8081), which works with or without [tls]. */}}
{{- define "cadre.portsAndProbes" -}}
ports:
  - name: grpc
    containerPort: 50051
    protocol: TCP
  - name: http
    containerPort: 8080
    protocol: TCP
  - name: probe
    containerPort: 8081
    protocol: TCP
livenessProbe:
  httpGet:
    path: /health
    port: probe
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /ready
    port: probe
  initialDelaySeconds: 2
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}
