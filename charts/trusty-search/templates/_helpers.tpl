{{/* Chart name, truncated to a DNS label. */}}
{{- define "trusty-search.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix for every object. Kept short enough that "-operator" and the
StatefulSet pod-name / controller-revision suffixes still fit in 63 characters.
*/}}
{{- define "trusty-search.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "trusty-search.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every object. */}}
{{- define "trusty-search.labels" -}}
helm.sh/chart: {{ include "trusty-search.chart" . }}
app.kubernetes.io/name: {{ include "trusty-search.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trusty-search
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels for one component: (dict "ctx" $ "component" "router") */}}
{{- define "trusty-search.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trusty-search.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "trusty-search.componentLabels" -}}
{{ include "trusty-search.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "trusty-search.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "trusty-search.adminSecretName" -}}
{{- default (printf "%s-admin" (include "trusty-search.fullname" .)) .Values.adminToken.existingSecret }}
{{- end }}

{{- define "trusty-search.routerHost" -}}
{{- printf "%s-router.%s.svc.%s" (include "trusty-search.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "trusty-search.shardService" -}}
{{- printf "%s-shard" (include "trusty-search.fullname" .) }}
{{- end }}

{{- define "trusty-search.storeUrl" -}}
{{- $url := required "store.url is required: s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///path" .Values.store.url }}
{{- if not (regexMatch "^(s3|gs|az|file)://." $url) }}
{{- fail (printf "store.url %q must start with s3://, gs://, az:// or file://" $url) }}
{{- end }}
{{- $url }}
{{- end }}

{{/* ConfigMap data, one set per role; also hashed into checksum/config. */}}
{{- define "trusty-search.config.shard" -}}
TRUSTY_LISTEN: {{ printf "0.0.0.0:%d" (int .Values.containerPort) | quote }}
TRUSTY_LOG_FORMAT: {{ .Values.logFormat | quote }}
TRUSTY_STORE: {{ include "trusty-search.storeUrl" . | quote }}
TRUSTY_CACHE_DIR: {{ .Values.shard.cache.mountPath | quote }}
TRUSTY_MEMORY_BUDGET: {{ include "trusty-search.sizeFlag" .Values.shard.memoryBudget | quote }}
TRUSTY_DISK_BUDGET: {{ include "trusty-search.sizeFlag" .Values.shard.diskBudget | quote }}
TRUSTY_LOAD_TIMEOUT: {{ .Values.shard.loadTimeout | quote }}
TRUSTY_MIN_DOWNLOAD_RATE: {{ include "trusty-search.sizeFlag" .Values.shard.minDownloadRate | quote }}
TRUSTY_MAX_RESTORES: {{ .Values.shard.maxRestores | quote }}
TRUSTY_WARM_QUEUE: {{ .Values.shard.warmQueue | quote }}
TRUSTY_EMBED_TIMEOUT: {{ .Values.shard.embedTimeout | quote }}
{{ include "trusty-search.config.embedder" . }}
{{ include "trusty-search.config.store" . }}
{{- end }}

{{/* The embedder, for shards (query embeddings) and build Jobs alike: an
Index without spec.embedder is built with the embedder its shards query
with, or its vectors would be switched off as a mismatch. */}}
{{- define "trusty-search.config.embedder" -}}
TRUSTY_EMBEDDER: {{ .Values.embedder.kind | quote }}
{{- if eq .Values.embedder.kind "minilm" }}
TRUSTY_MODEL_DIR: {{ .Values.embedder.modelDir | quote }}
{{- end }}
{{- if eq .Values.embedder.kind "http" }}
TRUSTY_EMBEDDER_URL: {{ required "embedder.url is required when embedder.kind=http" .Values.embedder.url | quote }}
{{- with .Values.embedder.model }}
TRUSTY_EMBEDDER_MODEL: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress to the object store: networkPolicy.objectStoreEgress,
plus the port of an S3-compatible endpoint (MinIO's 9000) when it is another,
plus the GKE metadata server where store clients get their tokens. */}}
{{- define "trusty-search.objectStoreEgress" -}}
{{ toYaml .Values.networkPolicy.objectStoreEgress }}
{{- with .Values.store.s3.endpoint }}
{{- /* The port after the host (after the brackets of an IPv6 address). */}}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" (urlParse .).host) }}
{{- if and $port (not (has $port (list "443" "80"))) }}
# -> the S3-compatible endpoint {{ . }}
- ports:
    - port: {{ $port | int }}
      protocol: TCP
{{- end }}
{{- end }}
{{- include "trusty-search.gkeMetadataEgress" . }}
{{- end }}

{{/* NetworkPolicy egress to the GKE metadata server as Calico sees it: GKE
redirects 169.254.169.254:80 there and policy is applied after the redirect,
so without this workload identity cannot fetch tokens. */}}
{{- define "trusty-search.gkeMetadataEgress" -}}
{{- if .Values.networkPolicy.gkeMetadataServer }}
# -> the GKE metadata server (workload identity tokens)
- to:
    - ipBlock:
        cidr: 169.254.169.252/32
  ports:
    - port: 988
      protocol: TCP
    - port: 987
      protocol: TCP
{{- end }}
{{- end }}

{{/* NetworkPolicy egress to an HTTP embedder (embedder.kind=http), on the port of embedder.url. */}}
{{- define "trusty-search.embedderEgress" -}}
{{- if eq .Values.embedder.kind "http" }}
{{- $u := urlParse .Values.embedder.url }}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" $u.host) | default (ternary "443" "80" (eq $u.scheme "https")) }}
# -> the HTTP embedder
- ports:
    - port: {{ $port | int }}
      protocol: TCP
  {{- with .Values.networkPolicy.embedderEgressTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{- define "trusty-search.config.store" -}}
{{- with .Values.store.s3.region }}
AWS_REGION: {{ . | quote }}
{{- end }}
{{- with .Values.store.s3.endpoint }}
AWS_ENDPOINT_URL: {{ . | quote }}
{{- end }}
{{- if .Values.store.s3.allowHttp }}
AWS_ALLOW_HTTP: "true"
{{- end }}
{{- with .Values.store.azure.accountName }}
AZURE_STORAGE_ACCOUNT_NAME: {{ . | quote }}
{{- end }}
{{- if .Values.store.gcs.credentialsSecret }}
GOOGLE_SERVICE_ACCOUNT_PATH: /var/run/secrets/trusty-search/gcs/{{ .Values.store.gcs.credentialsSecretKey }}
GOOGLE_APPLICATION_CREDENTIALS: /var/run/secrets/trusty-search/gcs/{{ .Values.store.gcs.credentialsSecretKey }}
{{- end }}
{{- end }}

{{- define "trusty-search.config.router" -}}
TRUSTY_LISTEN: {{ printf "0.0.0.0:%d" (int .Values.containerPort) | quote }}
TRUSTY_LOG_FORMAT: {{ .Values.logFormat | quote }}
TRUSTY_REPLICAS: {{ .Values.router.indexReplicas | quote }}
{{- if eq .Values.router.discovery "kubernetes" }}
TRUSTY_SHARDS_K8S: {{ printf "%s/%s" .Release.Namespace (include "trusty-search.shardService" .) | quote }}
{{- else }}
TRUSTY_SHARDS_DNS: {{ printf "%s.%s.svc.%s:%d" (include "trusty-search.shardService" .) .Release.Namespace .Values.clusterDomain (int .Values.containerPort) | quote }}
{{- end }}
{{- end }}

{{- define "trusty-search.config.operator" -}}
TRUSTY_LISTEN: {{ printf "0.0.0.0:%d" (int .Values.containerPort) | quote }}
TRUSTY_LOG_FORMAT: {{ .Values.logFormat | quote }}
TRUSTY_ROUTER_URL: {{ printf "http://%s:%d" (include "trusty-search.routerHost" .) (int .Values.router.service.port) | quote }}
TRUSTY_IMAGE: {{ include "trusty-search.image" . | quote }}
TRUSTY_STORE: {{ include "trusty-search.storeUrl" . | quote }}
{{- with .Values.store.existingSecret }}
TRUSTY_STORE_SECRET: {{ . | quote }}
{{- end }}
TRUSTY_LEASE_NAME: {{ printf "%s-operator" (include "trusty-search.fullname" .) | quote }}
{{- with .Values.operator.watchNamespace }}
TRUSTY_NAMESPACE: {{ . | quote }}
{{- end }}
TRUSTY_RESYNC: {{ .Values.operator.resync | quote }}
TRUSTY_BUILD_ENV: {{ include "trusty-search.buildEnv" . | fromYamlArray | toJson | quote }}
TRUSTY_BUILD_POD: {{ include "trusty-search.buildPod" . | fromYaml | toJson | quote }}
{{- with .Values.operator.importFrom }}
TRUSTY_IMPORT_FROM: {{ join "," . | quote }}
TRUSTY_IMPORT_DIR: "/var/lib/trusty-search/import"
{{- end }}
{{- if not .Values.operator.build.inIndexNamespace }}
TRUSTY_BUILD_NAMESPACE: {{ .Release.Namespace | quote }}
TRUSTY_VOLUME_SOURCES: {{ .Values.operator.build.volumeSources | toString | quote }}
{{- end }}
{{ include "trusty-search.config.store" . }}
{{- end }}

{{/* The operator's rights over build Jobs, granted only where they run
(operator.yaml). Exactly the verbs its code uses. */}}
{{- define "trusty-search.operatorJobRules" -}}
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Why a build failed or does not start: its pod's status.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
{{- end }}

{{/* Pod settings of build Jobs (see BuildPod in operator/src/jobs.rs). */}}
{{- define "trusty-search.buildPod" -}}
{{- $b := .Values.operator.build }}
podSecurityContext: {{ toJson .Values.podSecurityContext }}
{{- /* The GCS key Secret lives in the release namespace, where builds run. */}}
{{- if and .Values.store.gcs.credentialsSecret (not $b.inIndexNamespace) }}
volumes: {{ include "trusty-search.gcsVolume" . | fromYamlArray | toJson }}
volumeMounts: {{ include "trusty-search.gcsVolumeMount" . | fromYamlArray | toJson }}
{{- end }}
containerSecurityContext: {{ toJson .Values.containerSecurityContext }}
{{- with $b.resources }}
resources: {{ toJson . }}
{{- end }}
{{- with $b.nodeSelector }}
nodeSelector: {{ toJson . }}
{{- end }}
{{- with $b.tolerations }}
tolerations: {{ toJson . }}
{{- end }}
{{- with $b.affinity }}
affinity: {{ toJson . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{ toJson . }}
{{- end }}
{{- with (include "trusty-search.buildServiceAccountName" .) }}
serviceAccountName: {{ . | quote }}
{{- end }}
{{- with $b.podLabels }}
podLabels: {{ toJson . }}
{{- end }}
{{- with $b.podAnnotations }}
podAnnotations: {{ toJson . }}
{{- end }}
{{- end }}

{{/* The ServiceAccount of build pods: the one named, else the chart's
<fullname>-build when created (it exists only in the release namespace),
else none (the namespace's default). */}}
{{- define "trusty-search.buildServiceAccountName" -}}
{{- $b := .Values.operator.build }}
{{- if $b.serviceAccountName }}
{{- $b.serviceAccountName }}
{{- else if and (dig "serviceAccount" "create" false $b) (not $b.inIndexNamespace) }}
{{- printf "%s-build" (include "trusty-search.fullname" .) }}
{{- end }}
{{- end }}

{{/* What build Jobs need besides the store's Secret: the embedder settings,
the store's non-secret settings and store.extraEnv. (A GCS key file is
mounted only when builds run in the release namespace.) */}}
{{- define "trusty-search.buildEnv" -}}
{{- $keyMounted := and .Values.store.gcs.credentialsSecret (not .Values.operator.build.inIndexNamespace) }}
{{- range $k, $v := (include "trusty-search.config.embedder" . | fromYaml) }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- range $k, $v := (include "trusty-search.config.store" . | fromYaml) }}
{{- if or $keyMounted (not (hasPrefix "GOOGLE_" $k)) }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end }}
{{- with .Values.store.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Env shared by every container: admin token. */}}
{{- define "trusty-search.adminTokenEnv" -}}
- name: TRUSTY_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "trusty-search.adminSecretName" . }}
      key: {{ .Values.adminToken.secretKey }}
{{- end }}

{{/* envFrom for pods that talk to the object store. */}}
{{- define "trusty-search.storeEnvFrom" -}}
{{- with .Values.store.existingSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}

{{- define "trusty-search.gcsVolumeMount" -}}
{{- if .Values.store.gcs.credentialsSecret }}
- name: gcs-credentials
  mountPath: /var/run/secrets/trusty-search/gcs
  readOnly: true
{{- end }}
{{- end }}

{{- define "trusty-search.gcsVolume" -}}
{{- if .Values.store.gcs.credentialsSecret }}
- name: gcs-credentials
  secret:
    secretName: {{ .Values.store.gcs.credentialsSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.store.gcs.credentialsSecretKey }}
        path: {{ .Values.store.gcs.credentialsSecretKey }}
{{- end }}
{{- end }}

{{/* A size for the binary's flags: strings as given, numbers as whole bytes
(Helm reads 805306368 as a float64, which prints as 8.05306368e+08). */}}
{{- define "trusty-search.sizeFlag" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ printf "%.0f" (float64 .) }}{{ end }}
{{- end }}

{{/* Bytes in a size, as a float64 string: a number, a Kubernetes quantity
(2Gi, 1.5G, .5Ei, 129e6, 1.5E3, 2E: a sign, a decimal number, then a binary
suffix Ki..Ei, a decimal one n..E, or an exponent e/E with a signed integer;
E alone is exa, 1E3 is 1000), or a budget as the binary reads it (2GiB,
512MB, 1000). A negative size, or anything else, fails naming the value. */}}
{{- define "trusty-search.bytes" -}}
{{- if kindIs "string" . }}
{{- $v := trim . }}
{{- $num := regexFind "^[+]?([0-9]+[.]?[0-9]*|[.][0-9]+)" $v }}
{{- $suffix := trimPrefix $num $v }}
{{- $units := dict "" 1 "B" 1 "n" 1e-9 "u" 1e-6 "m" 0.001 "k" 1e3 "K" 1e3 "KB" 1e3 "M" 1e6 "MB" 1e6 "G" 1e9 "GB" 1e9 "T" 1e12 "TB" 1e12 "P" 1e15 "PB" 1e15 "E" 1e18 "Ki" 1024 "KiB" 1024 "Mi" 1048576 "MiB" 1048576 "Gi" 1073741824 "GiB" 1073741824 "Ti" 1099511627776 "TiB" 1099511627776 "Pi" 1125899906842624 "PiB" 1125899906842624 "Ei" 1152921504606846976 }}
{{- if not $num }}
{{- fail (printf "cannot read %q as a size" .) }}
{{- else if regexMatch "^[eE][+-]?[0-9]+$" $suffix }}
{{- /* Kubernetes caps quantities at 2^63-1 bytes; float64 overflows past
e308, so exponents beyond what any size needs are capped (or zero) first. */}}
{{- $exp := substr 1 -1 $suffix | trimPrefix "+" | atoi }}
{{- if gt $exp 300 }}
{{- ternary 0.0 9223372036854775807.0 (eq (float64 $num) 0.0) }}
{{- else if lt $exp -300 }}
{{- 0.0 }}
{{- else }}
{{- float64 (printf "%se%d" $num $exp) }}
{{- end }}
{{- else if hasKey $units (trim $suffix) }}
{{- mulf (float64 $num) (index $units (trim $suffix)) }}
{{- else }}
{{- fail (printf "cannot read %q as a size" .) }}
{{- end }}
{{- else }}
{{- float64 . }}
{{- end }}
{{- end }}

{{/* Probes of one role: fixed paths on the named port, timing from the role's
`probes` values merged over these defaults. Takes the role's values. */}}
{{- define "trusty-search.probes" -}}
{{- $p := .probes | default dict }}
{{- $startup := merge (deepCopy ($p.startup | default dict)) (dict "periodSeconds" 2 "failureThreshold" 60) }}
{{- $liveness := merge (deepCopy ($p.liveness | default dict)) (dict "periodSeconds" 10 "timeoutSeconds" 3 "failureThreshold" 3) }}
{{- $readiness := merge (deepCopy ($p.readiness | default dict)) (dict "periodSeconds" 5 "timeoutSeconds" 3 "failureThreshold" 2) }}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml $startup | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml $liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  {{- toYaml $readiness | nindent 2 }}
{{- end }}

{{/* preStop of a serving role (takes the role's values): the server stops
accepting on SIGTERM, but EndpointSlices and routers still send requests to
the pod for a few seconds, so keep serving that long first. */}}
{{- define "trusty-search.preStop" -}}
{{- if .preStopDelaySeconds }}
lifecycle:
  preStop:
    exec:
      command: ["sleep", "{{ int .preStopDelaySeconds }}"]
{{- end }}
{{- end }}

{{/* Soft spread across nodes unless the user supplies constraints. */}}
{{- define "trusty-search.spread" -}}
{{- if .constraints }}
{{- toYaml .constraints }}
{{- else }}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "trusty-search.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount a role runs as: <role>.serviceAccount.name, else <fullname>-<role>.
Call with (dict "ctx" . "role" "router").
*/}}
{{- define "trusty-search.serviceAccountName" -}}
{{- $sa := (index .ctx.Values .role).serviceAccount -}}
{{- default (printf "%s-%s" (include "trusty-search.fullname" .ctx) .role) $sa.name -}}
{{- end -}}
