{{/* Chart name, truncated to the 63 characters a label value may have. */}}
{{- define "openanomaly.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, with the chart's unless it already has it. */}}
{{- define "openanomaly.fullname" -}}
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

{{- define "openanomaly.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "openanomaly.labels" -}}
helm.sh/chart: {{ include "openanomaly.chart" . }}
{{ include "openanomaly.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "openanomaly.selectorLabels" -}}
app.kubernetes.io/name: {{ include "openanomaly.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "openanomaly.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "openanomaly.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "openanomaly.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The component the Service and the ServiceMonitor select: the pods that serve HTTP. */}}
{{- define "openanomaly.httpComponent" -}}
{{- if .Values.cluster.enabled }}scheduler{{ else }}daemon{{ end }}
{{- end }}

{{/*
The pod template of every workload. Called with a dict:
  root            the chart's context ($)
  component       daemon | scheduler | worker (label app.kubernetes.io/component)
  args            the openanomaly subcommand and its flags (the image's ENTRYPOINT is openanomaly)
  http            serves /healthz, /readyz and /metrics on 8495 (probes, port)
  pipelines       mounts the pipelines ConfigMap at /etc/openanomaly/pipelines.d
  persistentData  the workload brings a volume named "data" (a volumeClaimTemplate)
  resources       the container's resources
*/}}
{{- define "openanomaly.podTemplate" -}}
{{- $root := .root -}}
metadata:
  labels:
    {{- include "openanomaly.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/settings: {{ include (print $root.Template.BasePath "/configmap-settings.yaml") $root | sha256sum }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "openanomaly.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
  containers:
    - name: openanomaly
      image: {{ include "openanomaly.image" $root | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args:
        {{- toYaml .args | nindent 8 }}
      env:
        - name: OA_CONFIG
          value: /etc/openanomaly/config/openanomaly.yaml
        - name: OA_STORAGE__DATA_DIR
          value: /var/lib/openanomaly
        - name: OA_HTTP__LISTEN
          value: "0.0.0.0:8495"
        - name: OA_PIPELINES_DIR
          value: /etc/openanomaly/pipelines.d
        {{- with $root.Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $root.Values.existingSecret }}
      envFrom:
        - secretRef:
            name: {{ . }}
      {{- end }}
      {{- if .http }}
      ports:
        - name: http
          containerPort: 8495
          protocol: TCP
      # Start-up imports the forecasting libraries and migrates the registry before it serves.
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: 5
        timeoutSeconds: 5
        failureThreshold: 60
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      {{- end }}
      {{- with .resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: /var/lib/openanomaly
        - name: tmp
          mountPath: /tmp
        - name: settings
          mountPath: /etc/openanomaly/config
          readOnly: true
        {{- if .pipelines }}
        - name: pipelines
          mountPath: /etc/openanomaly/pipelines.d
          readOnly: true
        {{- end }}
        {{- with $root.Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    {{- if not .persistentData }}
    - name: data
      emptyDir: {}
    {{- end }}
    - name: tmp
      emptyDir: {}
    - name: settings
      configMap:
        name: {{ include "openanomaly.fullname" $root }}-settings
    {{- if .pipelines }}
    - name: pipelines
      configMap:
        name: {{ include "openanomaly.fullname" $root }}-pipelines
    {{- end }}
    {{- with $root.Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $root.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
