{{/*
Named templates that add the skiff sidecar to a pod. Each takes the including chart's root
context (`.`); skiff's values are read from `.Values.skiff` (this library's values.yaml holds the
defaults), and the application's `.Values.env` entries that skiff reads are passed to skiff.

  metadata.annotations:           include "skiff.podAnnotations" .
  spec.terminationGracePeriodSeconds: include "skiff.terminationGracePeriodSeconds" .
  spec.initContainers:            include "skiff.initContainers" .   (native sidecar)
  spec.containers:                include "skiff.containers" .       (nativeSidecar: false)
  handler container env:          include "skiff.handlerEnv" .
  handler container volumeMounts: include "skiff.handlerVolumeMounts" .
  spec.volumes:                   include "skiff.volumes" .
  a PodMonitor document:          include "skiff.podMonitor" (dict "root" . "selector" $labels)
*/}}

{{/* Version of this library, written in the skiff.io/chart marker annotation. */}}
{{- define "skiff.chartVersion" -}}0.1.0{{- end -}}

{{/* Settings the chart owns (probes, socket volume, termination): set with chart values. */}}
{{- define "skiff.reservedKeys" -}}admin.address handler.socket shutdown.grace_period{{- end -}}

{{/* Environment variables of the application that skiff reads too (docs/configuration.md). */}}
{{- define "skiff.envNames" -}}
KAFKA_BOOTSTRAP_SERVERS SCHEMA_REGISTRY_URL CAMUNDA_ZEEBE_ADDRESS ZEEBE_ADDRESS ZEEBE_KEEP_ALIVE
{{- end -}}

{{- define "skiff.values" -}}
{{- $v := .Values.skiff | default dict -}}
{{- range $key, $_ := ($v.config | default dict) -}}
{{- if has $key (splitList " " (include "skiff.reservedKeys" $)) -}}
{{- fail (printf "skiff.config.%s is set by the chart: use skiff.adminPort, skiff.socketDir or skiff.shutdownGracePeriodSeconds" $key) -}}
{{- end -}}
{{- if hasPrefix "skiff.io/" $key -}}
{{- fail (printf "skiff.config key %s: give the setting without the skiff.io/ prefix" $key) -}}
{{- end -}}
{{- end -}}
{{- toYaml $v -}}
{{- end -}}

{{- define "skiff.annotationsFile" -}}
{{- $v := fromYaml (include "skiff.values" .) -}}
{{- printf "%s/annotations" $v.podInfoDir -}}
{{- end -}}

{{- define "skiff.podAnnotations" -}}
{{- $v := fromYaml (include "skiff.values" .) -}}
skiff.io/inject: "true"
skiff.io/chart: {{ printf "skiff-%s" (include "skiff.chartVersion" .) | quote }}
{{- range $key, $value := $v.config }}
skiff.io/{{ $key }}: {{ kindIs "slice" $value | ternary (join "," $value) (toString $value) | quote }}
{{- end }}
{{- if $v.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $v.adminPort | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{- define "skiff.terminationGracePeriodSeconds" -}}
{{- $v := fromYaml (include "skiff.values" .) -}}
{{- add (int $v.shutdownGracePeriodSeconds) 10 (int $v.terminationMarginSeconds) -}}
{{- end -}}

{{- define "skiff.probe" -}}
httpGet:
  path: {{ .path }}
  port: skiff-admin
periodSeconds: {{ .p.periodSeconds }}
failureThreshold: {{ .p.failureThreshold }}
timeoutSeconds: {{ .p.timeoutSeconds }}
{{- end -}}

{{- define "skiff.env" -}}
{{- $v := fromYaml (include "skiff.values" .) -}}
- name: SKIFF_ANNOTATIONS
  value: {{ include "skiff.annotationsFile" . | quote }}
- name: SKIFF_HANDLER_SOCKET
  value: {{ printf "%s/handler.sock" $v.socketDir | quote }}
- name: SKIFF_ADMIN_ADDRESS
  value: {{ printf "0.0.0.0:%d" (int $v.adminPort) | quote }}
- name: SKIFF_SHUTDOWN_GRACE_PERIOD
  value: {{ printf "%ds" (int $v.shutdownGracePeriodSeconds) | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- $names := splitList " " (include "skiff.envNames" .) }}
{{- range (.Values.env | default list) }}
{{- if or (has .name $names) (hasPrefix "OTEL_" .name) (hasPrefix "SKIFF_" .name) }}
- {{ toYaml . | nindent 2 | trim }}
{{- end }}
{{- end }}
{{- with $v.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The skiff container; `native` adds restartPolicy: Always (native sidecar). */}}
{{- define "skiff.container" -}}
{{- $v := fromYaml (include "skiff.values" .root) -}}
- name: skiff
  image: {{ printf "%s:%s" $v.image.repository $v.image.tag | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  args: [run]
  env:
    {{- include "skiff.env" .root | nindent 4 }}
  ports:
    - name: skiff-admin
      containerPort: {{ $v.adminPort }}
      protocol: TCP
  startupProbe:
    {{- include "skiff.probe" (dict "path" "/healthz" "p" $v.probes.startup) | nindent 4 }}
  livenessProbe:
    {{- include "skiff.probe" (dict "path" "/healthz" "p" $v.probes.liveness) | nindent 4 }}
  readinessProbe:
    {{- include "skiff.probe" (dict "path" "/readyz" "p" $v.probes.readiness) | nindent 4 }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    - name: skiff-socket
      mountPath: {{ $v.socketDir }}
    - name: skiff-podinfo
      mountPath: {{ $v.podInfoDir }}
      readOnly: true
{{- end -}}

{{- define "skiff.initContainers" -}}
{{- $v := fromYaml (include "skiff.values" .) -}}
{{- if $v.nativeSidecar }}
{{- if semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version }}
{{- fail (printf "skiff.nativeSidecar needs Kubernetes 1.29 or later (this cluster: %s; before, a restartPolicy on an init container is dropped and the pod never starts): set skiff.nativeSidecar=false" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- include "skiff.container" (dict "root" . "native" true) }}
{{- end }}
{{- end -}}

{{- define "skiff.containers" -}}
{{- $v := fromYaml (include "skiff.values" .) -}}
{{- if not $v.nativeSidecar }}
{{- include "skiff.container" (dict "root" . "native" false) }}
{{- end }}
{{- end -}}

{{- define "skiff.handlerEnv" -}}
{{- $v := fromYaml (include "skiff.values" .) -}}
- name: SKIFF_SOCKET
  value: {{ printf "%s/handler.sock" $v.socketDir | quote }}
{{- end -}}

{{- define "skiff.handlerVolumeMounts" -}}
{{- $v := fromYaml (include "skiff.values" .) -}}
- name: skiff-socket
  mountPath: {{ $v.socketDir }}
{{- end -}}

{{- define "skiff.volumes" -}}
{{- $v := fromYaml (include "skiff.values" .) -}}
- name: skiff-socket
  emptyDir:
    sizeLimit: {{ $v.socketVolumeSizeLimit }}
- name: skiff-podinfo
  downwardAPI:
    items:
      - path: annotations
        fieldRef:
          fieldPath: metadata.annotations
{{- end -}}

{{- define "skiff.podMonitor" -}}
{{- $v := fromYaml (include "skiff.values" .root) -}}
{{- if $v.metrics.podMonitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: {{ .name }}
  labels:
    {{- toYaml (merge (dict) .selector $v.metrics.podMonitor.labels) | nindent 4 }}
spec:
  selector:
    matchLabels:
      {{- toYaml .selector | nindent 6 }}
  podMetricsEndpoints:
    - port: skiff-admin
      path: /metrics
      interval: {{ $v.metrics.podMonitor.interval }}
{{- end }}
{{- end -}}
