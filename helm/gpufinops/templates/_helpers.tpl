{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "gpufinops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "gpufinops.fullname" -}}
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

{{- define "gpufinops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gpufinops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpufinops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gpufinops.labels" -}}
helm.sh/chart: {{ include "gpufinops.chart" . }}
{{ include "gpufinops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gpufinops
{{- end }}

{{- define "gpufinops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gpufinops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Several replicas: Kopf peering, so only the highest-priority one acts. */}}
{{- define "gpufinops.ha" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/* Node duties (idle node shutdown, unallocated GPU cost): cluster-wide instances only. */}}
{{- define "gpufinops.nodeDuties" -}}
{{- if and .Values.nodeDuties (not .Values.watchNamespaces) }}true{{- end }}
{{- end }}

{{- define "gpufinops.peeringName" -}}
{{- default (include "gpufinops.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "gpufinops.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The operator pod, shared by the Deployment (one replica) and the StatefulSet (HA). */}}
{{- define "gpufinops.podTemplate" -}}
metadata:
  labels:
    {{- include "gpufinops.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "gpufinops.serviceAccountName" . }}
  automountServiceAccountToken: true
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: operator
      image: {{ include "gpufinops.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      # The image's entrypoint is `gpufinops run`; these are its flags.
      args:
        - --config=/etc/gpufinops/config.yaml
        - --liveness=http://0.0.0.0:{{ .Values.operator.healthPort }}/healthz
        - --metrics-address=0.0.0.0:{{ .Values.operator.metricsPort }}
        - --sync-seconds={{ .Values.operator.syncSeconds }}
        - --log-format={{ .Values.operator.logFormat }}
        {{- range .Values.watchNamespaces }}
        - --namespace={{ . }}
        {{- end }}
        {{- with .Values.workloadSelector }}
        - --selector={{ . }}
        {{- end }}
        {{- if not (or .Values.nodeDuties .Values.watchNamespaces) }}
        - --no-node-duties
        {{- end }}
        {{- if include "gpufinops.ha" . }}
        - --peering={{ include "gpufinops.peeringName" . }}
        - --priority=$(GPUFINOPS_PEERING_PRIORITY)
        {{- end }}
        {{- if .Values.operator.verbose }}
        - --verbose
        {{- end }}
        {{- with .Values.operator.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      env:
        # Kopf's peering identity: the pod's name.
        - name: POD_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if include "gpufinops.ha" . }}
        # Distinct peering priorities: a StatefulSet pod's ordinal.
        - name: GPUFINOPS_PEERING_PRIORITY
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        {{- end }}
        - name: PYTHONDONTWRITEBYTECODE
          value: "1"
        - name: HOME
          value: /tmp
        {{- with .Values.operator.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: health
          containerPort: {{ .Values.operator.healthPort }}
          protocol: TCP
        - name: metrics
          containerPort: {{ .Values.operator.metricsPort }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: health
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /healthz
          port: health
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/gpufinops
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- with include "gpufinops.connectionMounts" . | trim }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "gpufinops.fullname" . }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- with include "gpufinops.connectionVolumes" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
What idle node shutdown does with the configured pools: enabled anywhere,
acting anywhere (enabled and not dryRun), and the shutdown providers acting
pools use. A pool's own idleShutdown replaces the cluster-wide one.
*/}}
{{- define "gpufinops.idleShutdown" -}}
{{- $default := .Values.config.idleShutdown | default dict }}
{{- $enabled := false }}
{{- $acting := false }}
{{- $providers := list }}
{{- $settings := list $default }}
{{- range .Values.config.nodePools }}
{{- $settings = append $settings (.idleShutdown | default $default) }}
{{- end }}
{{- range $settings }}
{{- if .enabled }}
{{- $enabled = true }}
{{- if not (hasKey . "dryRun" | ternary .dryRun true) }}
{{- $acting = true }}
{{- $providers = append $providers (.provider | default "kubernetes") }}
{{- end }}
{{- end }}
{{- end }}
enabled: {{ $enabled }}
acting: {{ $acting }}
providers: {{ $providers | uniq | toJson }}
{{- end }}

{{/* What <fullname>-edit grants (and <fullname>-budget-admin with it). */}}
{{- define "gpufinops.editRules" }}
  - apiGroups: [gpufinops.dev]
    resources: [aiworkloads]
    verbs: [get, list, watch, create, update, patch, delete, deletecollection]
  # kubectl scale aiw/NAME --replicas=N (spec.replicas, the manual override).
  - apiGroups: [gpufinops.dev]
    resources: [aiworkloads/scale]
    verbs: [get, update, patch]
{{- end }}

{{/*
A CEL string literal in single quotes. Only label keys, label values and pool
names go through here, which the values schema limits to these characters; the
check is repeated so that no value can ever close the literal.
*/}}
{{- define "gpufinops.celString" -}}
{{- $s := toString . }}
{{- if not (regexMatch "^[-A-Za-z0-9_./]*$" $s) }}
{{- fail (printf "%q cannot be used in the admission policy: label keys, label values and pool names are letters, digits, '-', '_', '.' and '/'" $s) }}
{{- end }}
{{- printf "'%s'" $s }}
{{- end }}

{{/*
CEL: whether the labels of the request's Namespace (variables.labels) match a
label selector: matchLabels, and matchExpressions with In, NotIn, Exists,
DoesNotExist, as the operator's own LabelSelector does.
*/}}
{{- define "gpufinops.celNamespaceSelector" -}}
{{- $terms := list }}
{{- range $key, $want := .matchLabels | default dict }}
{{- $k := include "gpufinops.celString" $key }}
{{- $terms = append $terms (printf "(%s in variables.labels && variables.labels[%s] == %s)" $k $k (include "gpufinops.celString" $want)) }}
{{- end }}
{{- range .matchExpressions | default list }}
{{- $k := include "gpufinops.celString" .key }}
{{- $values := list }}
{{- range .values | default list }}{{ $values = append $values (include "gpufinops.celString" .) }}{{ end }}
{{- $in := printf "(%s in variables.labels && variables.labels[%s] in [%s])" $k $k (join ", " $values) }}
{{- if eq .operator "In" }}{{ $terms = append $terms $in }}
{{- else if eq .operator "NotIn" }}{{ $terms = append $terms (printf "!%s" $in) }}
{{- else if eq .operator "Exists" }}{{ $terms = append $terms (printf "%s in variables.labels" $k) }}
{{- else if eq .operator "DoesNotExist" }}{{ $terms = append $terms (printf "!(%s in variables.labels)" $k) }}
{{- else }}{{ fail (printf "namespaceSelector: unknown operator %q" .operator) }}
{{- end }}
{{- end }}
{{- join " && " $terms }}
{{- end }}

{{/* A label selector in kubectl's syntax, for messages: a=b,c in (d,e),f,!g. */}}
{{- define "gpufinops.selectorString" -}}
{{- $parts := list }}
{{- range $key, $want := .matchLabels | default dict }}
{{- $parts = append $parts (printf "%s=%s" $key (toString $want)) }}
{{- end }}
{{- range .matchExpressions | default list }}
{{- $values := join "," (.values | default list) }}
{{- if eq .operator "In" }}{{ $parts = append $parts (printf "%s in (%s)" .key $values) }}
{{- else if eq .operator "NotIn" }}{{ $parts = append $parts (printf "%s notin (%s)" .key $values) }}
{{- else if eq .operator "Exists" }}{{ $parts = append $parts .key }}
{{- else }}{{ $parts = append $parts (printf "!%s" .key) }}
{{- end }}
{{- end }}
{{- join "," $parts }}
{{- end }}

{{/*
Connections to Prometheus and Alertmanager. config.prometheus and
config.alerting.alertmanagerClient take the operator's own keys (headers,
bearerTokenFile, basicAuth, tls, sigv4) and, for the chart, Secrets and
ConfigMaps to mount as the files those keys name:
  bearerToken: {secret, key}                       -> bearerTokenFile
  basicAuth:   {secret, usernameKey, passwordKey}  -> basicAuth.usernameFile, passwordFile
  tls.ca:      {configMap | secret, key}           -> tls.caFile
  tls.clientCert: {secret, certKey, keyKey}        -> tls.certFile, tls.keyFile
Each is mounted as a directory (never subPath), so a rotated Secret reaches
the operator, which re-reads the files when they change. Secret files are
mode 0440: the operator reads them through podSecurityContext.fsGroup.
*/}}
{{- define "gpufinops.connectionDir" -}}
/var/run/secrets/gpufinops/{{ . }}
{{- end }}

{{/* The operator keys of one connection ({conn, name}), as YAML: chart keys become file paths, empty values go. */}}
{{- define "gpufinops.connectionConfig" -}}
{{- $c := deepCopy (.conn | default dict) }}
{{- $dir := include "gpufinops.connectionDir" .name }}
{{- $token := $c.bearerToken | default dict }}
{{- $_ := unset $c "bearerToken" }}
{{- if $token.secret }}
{{- if $c.bearerTokenFile }}{{ fail (printf "%s: give bearerToken.secret or bearerTokenFile, not both" .path) }}{{ end }}
{{- $_ := set $c "bearerTokenFile" (printf "%s/bearer-token/%s" $dir ($token.key | default "token")) }}
{{- end }}
{{- $basic := $c.basicAuth | default dict }}
{{- if $basic.secret }}
{{- if $basic.passwordFile }}{{ fail (printf "%s: give basicAuth.secret or basicAuth.passwordFile, not both" .path) }}{{ end }}
{{- $_ := set $basic "passwordFile" (printf "%s/basic-auth/%s" $dir ($basic.passwordKey | default "password")) }}
{{- if not (or $basic.username $basic.usernameFile) }}
{{- $_ := set $basic "usernameFile" (printf "%s/basic-auth/%s" $dir ($basic.usernameKey | default "username")) }}
{{- end }}
{{- end }}
{{- $_ := unset $basic "secret" }}{{ $_ := unset $basic "usernameKey" }}{{ $_ := unset $basic "passwordKey" }}
{{- $tls := $c.tls | default dict }}
{{- $ca := $tls.ca | default dict }}
{{- $_ := unset $tls "ca" }}
{{- if and $ca.configMap $ca.secret }}{{ fail (printf "%s: tls.ca takes a configMap or a secret, not both" .path) }}{{ end }}
{{- if or $ca.configMap $ca.secret }}
{{- if $tls.caFile }}{{ fail (printf "%s: give tls.ca or tls.caFile, not both" .path) }}{{ end }}
{{- $_ := set $tls "caFile" (printf "%s/ca/%s" $dir ($ca.key | default "ca.crt")) }}
{{- end }}
{{- $client := $tls.clientCert | default dict }}
{{- $_ := unset $tls "clientCert" }}
{{- if $client.secret }}
{{- if or $tls.certFile $tls.keyFile }}{{ fail (printf "%s: give tls.clientCert or tls.certFile and tls.keyFile, not both" .path) }}{{ end }}
{{- $_ := set $tls "certFile" (printf "%s/client-cert/%s" $dir ($client.certKey | default "tls.crt")) }}
{{- $_ := set $tls "keyFile" (printf "%s/client-cert/%s" $dir ($client.keyKey | default "tls.key")) }}
{{- end }}
{{- $_ := set $c "basicAuth" $basic }}
{{- $_ := set $c "tls" $tls }}
{{- if not (and $c.sigv4 $c.sigv4.region) }}{{ $_ := unset $c "sigv4" }}{{ end }}
{{- if not $tls.insecureSkipVerify }}{{ $_ := unset $tls "insecureSkipVerify" }}{{ end }}
{{- range $key := list "headers" "bearerTokenFile" "basicAuth" "tls" "sigv4" }}
{{- $v := get $c $key }}
{{- if kindIs "map" $v }}
{{- range $k, $inner := $v }}
{{- if or (kindIs "invalid" $inner) (and (kindIs "string" $inner) (eq $inner "")) }}{{ $_ := unset $v $k }}{{ end }}
{{- end }}
{{- end }}
{{- if or (kindIs "invalid" $v) (empty $v) }}{{ $_ := unset $c $key }}{{ end }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/* The operator config: values.config with the connections' chart keys made file paths. */}}
{{- define "gpufinops.operatorConfig" -}}
{{- $config := deepCopy .Values.config }}
{{- /* The spend ledger lives in the release namespace, out of tenants' reach. */}}
{{- $cost := $config.cost | default dict }}
{{- if not (hasKey $cost "ledgerNamespace") }}
{{- $_ := set $cost "ledgerNamespace" .Release.Namespace }}
{{- end }}
{{- $_ := set $config "cost" $cost }}
{{- if $config.prometheus }}
{{- $_ := set $config "prometheus" (include "gpufinops.connectionConfig" (dict "conn" $config.prometheus "name" "prometheus" "path" "config.prometheus") | fromYaml) }}
{{- end }}
{{- if and $config.alerting $config.alerting.alertmanagerClient }}
{{- $client := include "gpufinops.connectionConfig" (dict "conn" $config.alerting.alertmanagerClient "name" "alertmanager" "path" "config.alerting.alertmanagerClient") | fromYaml }}
{{- if $client }}
{{- $_ := set $config.alerting "alertmanagerClient" $client }}
{{- else }}
{{- $_ := unset $config.alerting "alertmanagerClient" }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The connections' Secrets and ConfigMaps: (list name conn) pairs. */}}
{{- define "gpufinops.connections" -}}
{{- $out := list }}
{{- with .Values.config.prometheus }}{{ $out = append $out (list "prometheus" .) }}{{ end }}
{{- if .Values.config.alerting }}
{{- with .Values.config.alerting.alertmanagerClient }}{{ $out = append $out (list "alertmanager" .) }}{{ end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* Volumes of the connections' Secrets and ConfigMaps (list items, unindented). */}}
{{- define "gpufinops.connectionVolumes" -}}
{{- range include "gpufinops.connections" . | fromJsonArray }}
{{- $name := index . 0 }}
{{- $c := index . 1 }}
{{- with $c.bearerToken }}{{ if .secret }}
- name: {{ $name }}-bearer-token
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
    items:
      - {key: {{ .key | default "token" | quote }}, path: {{ .key | default "token" | quote }}}
{{- end }}{{ end }}
{{- with $c.basicAuth }}{{ if .secret }}
- name: {{ $name }}-basic-auth
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
    items:
      {{- if not (or .username .usernameFile) }}
      - {key: {{ .usernameKey | default "username" | quote }}, path: {{ .usernameKey | default "username" | quote }}}
      {{- end }}
      - {key: {{ .passwordKey | default "password" | quote }}, path: {{ .passwordKey | default "password" | quote }}}
{{- end }}{{ end }}
{{- $tls := $c.tls | default dict }}
{{- with $tls.ca }}
{{- if .configMap }}
- name: {{ $name }}-ca
  configMap:
    name: {{ .configMap }}
    items:
      - {key: {{ .key | default "ca.crt" | quote }}, path: {{ .key | default "ca.crt" | quote }}}
{{- else if .secret }}
- name: {{ $name }}-ca
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
    items:
      - {key: {{ .key | default "ca.crt" | quote }}, path: {{ .key | default "ca.crt" | quote }}}
{{- end }}
{{- end }}
{{- with $tls.clientCert }}{{ if .secret }}
- name: {{ $name }}-client-cert
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
    items:
      - {key: {{ .certKey | default "tls.crt" | quote }}, path: {{ .certKey | default "tls.crt" | quote }}}
      - {key: {{ .keyKey | default "tls.key" | quote }}, path: {{ .keyKey | default "tls.key" | quote }}}
{{- end }}{{ end }}
{{- end }}
{{- end }}

{{/* Mounts of those volumes, read-only directories (list items, unindented). */}}
{{- define "gpufinops.connectionMounts" -}}
{{- range include "gpufinops.connections" . | fromJsonArray }}
{{- $name := index . 0 }}
{{- $c := index . 1 }}
{{- $dir := include "gpufinops.connectionDir" $name }}
{{- $tls := $c.tls | default dict }}
{{- range $kind, $on := dict "bearer-token" (and $c.bearerToken $c.bearerToken.secret) "basic-auth" (and $c.basicAuth $c.basicAuth.secret) "ca" (and $tls.ca (or $tls.ca.configMap $tls.ca.secret)) "client-cert" (and $tls.clientCert $tls.clientCert.secret) }}
{{- if $on }}
- name: {{ $name }}-{{ $kind }}
  mountPath: {{ $dir }}/{{ $kind }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- end }}
