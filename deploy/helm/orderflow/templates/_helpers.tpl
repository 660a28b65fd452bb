{{/*
Names. Kept to 63 characters because they become DNS labels.
*/}}
{{- define "orderflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "orderflow.fullname" -}}
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

{{- define "orderflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels. Call with (dict "root" $ "component" "api").
*/}}
{{- define "orderflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orderflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "orderflow.labels" -}}
helm.sh/chart: {{ include "orderflow.chart" .root }}
{{ include "orderflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: orderflow
{{- end }}

{{- define "orderflow.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "orderflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "orderflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Resource names of the parts, so that every template agrees on them.
*/}}
{{- define "orderflow.secretName" -}}
{{- include "orderflow.fullname" . }}-secrets
{{- end }}

{{- define "orderflow.configName" -}}
{{- include "orderflow.fullname" . }}-config
{{- end }}

{{- define "orderflow.mongodbName" -}}
{{- include "orderflow.fullname" . }}-mongodb
{{- end }}

{{- define "orderflow.postgresqlName" -}}
{{- include "orderflow.fullname" . }}-postgresql
{{- end }}

{{/*
The store run inside the release: "mongodb", "postgresql", or "" when the store
is external (store.kind picks the engine, <engine>.enabled bundles it).
*/}}
{{- define "orderflow.bundledStore" -}}
{{- if and (eq .Values.store.kind "mongodb") .Values.mongodb.enabled }}
{{- print "mongodb" }}
{{- else if and (eq .Values.store.kind "postgresql") .Values.postgresql.enabled }}
{{- print "postgresql" }}
{{- end }}
{{- end }}

{{- define "orderflow.redisName" -}}
{{- include "orderflow.fullname" . }}-redis
{{- end }}

{{/*
Comma-separated host:port list of the in-release replica-set members, addressed
through the headless Service (stable per-pod DNS names).
*/}}
{{- define "orderflow.mongodbHosts" -}}
{{- $name := include "orderflow.mongodbName" . }}
{{- $hosts := list }}
{{- range $i := until (int .Values.mongodb.replicas) }}
{{- $hosts = append $hosts (printf "%s-%d.%s-headless.%s.svc:27017" $name $i $name $.Release.Namespace) }}
{{- end }}
{{- join "," $hosts }}
{{- end }}

{{/*
Environment shared by every orderflow container: the ConfigMap, plus the two
connection URLs from the Secret (not the whole Secret: the pods have no use for
the MongoDB root password or keyfile). An external Redis URL kept in a Secret of
the user's (redis.externalSecret.name) is read from there.
*/}}
{{- define "orderflow.env" -}}
- name: ORDERFLOW_REDIS_URL
  valueFrom:
    secretKeyRef:
      {{- if include "orderflow.redisUrlInUserSecret" . }}
      name: {{ .Values.redis.externalSecret.name }}
      key: {{ .Values.redis.externalSecret.key }}
      {{- else }}
      name: {{ include "orderflow.secretName" . }}
      key: redis-url
      {{- end }}
- name: ORDERFLOW_STORE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "orderflow.secretName" . }}
      key: store-url
{{- end }}

{{- define "orderflow.envFrom" -}}
- configMapRef:
    name: {{ include "orderflow.configName" . }}
{{- end }}

{{/*
Writable scratch space: the root filesystem is read-only, and Sanic's
multiprocess metrics and the runtime keep small files under /tmp.
*/}}
{{- define "orderflow.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{- define "orderflow.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
Pod annotations: a checksum of the config so that a changed ConfigMap or
Secret rolls the pods, plus Prometheus scrape hints. Call with
(dict "root" $ "port" 8000 "extra" .Values.api.podAnnotations).
*/}}
{{- define "orderflow.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- if .root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Wait until MongoDB answers, for the init Jobs. Uses the root user from the Secret.
*/}}
{{- define "orderflow.mongodbRootEnv" -}}
- name: MONGO_ROOT_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "orderflow.secretName" . }}
      key: mongodb-root-username
- name: MONGO_ROOT_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "orderflow.secretName" . }}
      key: mongodb-root-password
{{- end }}

{{/*
The value of a generated secret: the given value, else the one already stored in
the release's Secret (so upgrades keep passwords), else a new random one.
Call with (dict "root" $ "key" "redis-password" "value" .Values.redis.auth.password "length" 32).
*/}}
{{- define "orderflow.secretValue" -}}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "orderflow.secretName" .root) }}
{{- $data := get $existing "data" | default dict }}
{{- if hasKey $data .key }}
{{- index $data .key | b64dec }}
{{- else }}
{{- randAlphaNum (int .length) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Container-level security context of the data stores and their Jobs (MongoDB,
PostgreSQL, Redis): the same hardening as orderflow's own containers; each
server's writable paths are volumes.
*/}}
{{- define "orderflow.storeSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Scheduling constraints of a pod. Call with the role's values, e.g.
(include "orderflow.scheduling" .Values.api).
*/}}
{{- define "orderflow.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The `data` claim of a data store's StatefulSet. Call with
(dict "root" $ "component" "redis" "persistence" .Values.redis.persistence).
*/}}
{{- define "orderflow.dataClaim" -}}
- metadata:
    name: data
    labels:
      {{- include "orderflow.selectorLabels" . | nindent 6 }}
  spec:
    accessModes: ["ReadWriteOnce"]
    {{- with .persistence.storageClass }}
    storageClassName: {{ . | quote }}
    {{- end }}
    resources:
      requests:
        storage: {{ .persistence.size }}
{{- end }}

{{/*
Labels every pod of the release carries (without the component): what the
NetworkPolicies select "the release's own pods" by.
*/}}
{{- define "orderflow.releaseSelector" -}}
app.kubernetes.io/name: {{ include "orderflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
"true" when the pods read the external Redis URL from the user's Secret
(redis.enabled false and redis.externalSecret.name set), else "".
*/}}
{{- define "orderflow.redisUrlInUserSecret" -}}
{{- if and (not .Values.redis.enabled) .Values.redis.externalSecret.name -}}true{{- end -}}
{{- end }}

{{/*
"true" when the external Redis is a Redis Cluster (its URL's scheme is
redis+cluster:// or rediss+cluster://), else "".
*/}}
{{- define "orderflow.redisIsCluster" -}}
{{- if and (not .Values.redis.enabled) (hasSuffix "+cluster" (urlParse (default "redis://x" .Values.redis.externalUrl)).scheme) -}}true{{- end -}}
{{- end }}

{{/*
The Redis streams of one topic: itself, or its partitions <stream>.p0 ..
<stream>.p<N-1> when it is one of the per-order topics and config.topicPartitions
is above 1 (orderflow.agents.topics.PARTITIONED_STREAMS). A JSON list.
Call with (dict "root" $ "stream" "orders-stream").
*/}}
{{- define "orderflow.topicStreams" -}}
{{- $partitioned := list "orders-stream" "deliveries-stream" "order-status-stream" "delivery-status-stream" "simulate-order-stream" "simulate-delivery-stream" }}
{{- $count := int .root.Values.config.topicPartitions }}
{{- if and (has .stream $partitioned) (gt $count 1) }}
{{- $streams := list }}
{{- range $i := until $count }}
{{- $streams = append $streams (printf "%s.p%d" $.stream $i) }}
{{- end }}
{{- toJson $streams }}
{{- else }}
{{- toJson (list .stream) }}
{{- end }}
{{- end }}
