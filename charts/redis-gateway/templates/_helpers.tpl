{{/*
Helpers of the redis-gateway chart: names, labels, the image reference, and the checks that
values.schema.json cannot express (cross-field rules). Every check fails the render with a
message naming the value to fix.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "redis-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name: fullnameOverride, else the release name, with the chart name appended unless the
release name already contains it. 63 characters at most (DNS label).
*/}}
{{- define "redis-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The full name with a suffix, e.g. (list . "ops") -> <full name>-ops: the full name is cut so that the
whole stays within 63 characters (a DNS label, as Service names must be) and the suffix is kept.
Cutting the whole instead (trunc 63 of <full name>-ops) could give the ops Service the data
Service's name. A release name has at most 53 characters (Helm's limit) and the longest suffix is
10 characters with its "-", so the release name itself is never cut: two releases never share a name.
*/}}
{{- define "redis-gateway.suffixedName" -}}
{{- $ctx := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- printf "%s-%s" (include "redis-gateway.fullname" $ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix -}}
{{- end -}}

{{/*
The ClusterRole (and ClusterRoleBinding) name: <release namespace>-<full name>-discovery, so two
releases of one name in different namespaces do not share it. A namespace name can itself be 63
characters long: a name over 63 keeps its first 52 characters and ends in 10 hex characters of the
SHA-256 of the whole name (still one name per release and namespace).
*/}}
{{- define "redis-gateway.clusterRoleName" -}}
{{- $name := printf "%s-%s" .Release.Namespace (include "redis-gateway.suffixedName" (list . "discovery")) -}}
{{- if le (len $name) 63 -}}
{{- $name -}}
{{- else -}}
{{- printf "%s-%s" ($name | trunc 52 | trimSuffix "-") ($name | sha256sum | trunc 10) -}}
{{- end -}}
{{- end -}}

{{/*
The `from` of a NetworkPolicy ingress rule for networkPolicy.data or networkPolicy.ops: one peer
with the namespaceSelector and/or podSelector that are not null (both: pods matching podSelector in
namespaces matching namespaceSelector; podSelector alone: in the release namespace). Both null: no
`from`, i.e. from anywhere, outside the cluster included.
*/}}
{{- define "redis-gateway.networkPolicyFrom" -}}
{{- $peer := dict -}}
{{- if not (kindIs "invalid" .namespaceSelector) -}}{{- $_ := set $peer "namespaceSelector" .namespaceSelector -}}{{- end -}}
{{- if not (kindIs "invalid" .podSelector) -}}{{- $_ := set $peer "podSelector" .podSelector -}}{{- end -}}
{{- if $peer -}}
from:
  - {{ toYaml $peer | indent 4 | trim }}
{{- end -}}
{{- end -}}

{{/* name-version, for the helm.sh/chart label. */}}
{{- define "redis-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "redis-gateway.labels" -}}
helm.sh/chart: {{ include "redis-gateway.chart" . }}
{{ include "redis-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ include "redis-gateway.versionLabel" . | quote }}
app.kubernetes.io/part-of: redis-gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
The image tag as a label value: without an "@sha256:..." suffix (skaffold deploys tag@digest), at
most 63 characters, starting and ending with a letter or digit.
*/}}
{{- define "redis-gateway.versionLabel" -}}
{{- default .Chart.AppVersion .Values.image.tag | splitList "@" | first | trunc 63 | trimAll "-_." -}}
{{- end -}}

{{/* Labels that select the gateway's pods (never change them on upgrade: selectors are immutable). */}}
{{- define "redis-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redis-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The ServiceAccount the pods run as. */}}
{{- define "redis-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "redis-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository[:tag][@digest]. */}}
{{- define "redis-gateway.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- $ref := .Values.image.repository -}}
{{- if $tag -}}{{- $ref = printf "%s:%s" $ref $tag -}}{{- end -}}
{{- if .Values.image.digest -}}{{- $ref = printf "%s@%s" $ref .Values.image.digest -}}{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* Watched namespaces, duplicates removed, as a JSON list (["*"]: every namespace). */}}
{{- define "redis-gateway.watchNamespaces" -}}
{{- .Values.discovery.kubernetes.namespaces | uniq | toJson -}}
{{- end -}}

{{/* "true" when discovery.kubernetes.namespaces is ["*"]: every namespace, cluster-scoped RBAC. */}}
{{- define "redis-gateway.watchAllNamespaces" -}}
{{- if has "*" .Values.discovery.kubernetes.namespaces -}}true{{- end -}}
{{- end -}}

{{/* Where secret files are mounted; gateway.yaml names these paths. */}}
{{- define "redis-gateway.tokenDir" -}}/etc/redis-gateway/tokens{{- end -}}
{{- define "redis-gateway.redisSecretDir" -}}/etc/redis-gateway/redis{{- end -}}
{{- define "redis-gateway.configDir" -}}/etc/redis-gateway/config{{- end -}}

{{/* Name of the Secret holding the tokens: the existing one, or the chart's. */}}
{{- define "redis-gateway.tokensSecretName" -}}
{{- default (include "redis-gateway.suffixedName" (list . "tokens")) .Values.auth.existingSecret -}}
{{- end -}}

{{/* Name of the Secret holding the Redis password: the existing one, or the chart's. */}}
{{- define "redis-gateway.redisSecretName" -}}
{{- default (include "redis-gateway.suffixedName" (list . "redis")) .Values.redis.existingSecret -}}
{{- end -}}

{{/* "true" when the gateway gets a Redis password file. */}}
{{- define "redis-gateway.hasRedisPassword" -}}
{{- if or .Values.redis.existingSecret .Values.redis.password -}}true{{- end -}}
{{- end -}}

{{/*
Tokens read from the Secret (those without sha256), as a JSON list of {name, key}. Also the place
where token values are checked: exactly one source per token, and a value only when the chart
makes the Secret.
*/}}
{{- define "redis-gateway.secretTokens" -}}
{{- $out := list -}}
{{- $names := dict -}}
{{- range $i, $t := .Values.auth.tokens -}}
{{- if hasKey $names $t.name -}}
{{- fail (printf "auth.tokens[%d].name: %q is used by another token too; token names must be unique" $i $t.name) -}}
{{- end -}}
{{- $_ := set $names $t.name true -}}
{{- if and $t.sha256 $t.value -}}
{{- fail (printf "auth.tokens[%d] (%s): give either value or sha256, not both" $i $t.name) -}}
{{- end -}}
{{- if and $t.sha256 $t.secretKey -}}
{{- fail (printf "auth.tokens[%d] (%s): secretKey names a key of auth.existingSecret, but the token has sha256; drop one" $i $t.name) -}}
{{- end -}}
{{- if not $t.sha256 -}}
{{- if $.Values.auth.existingSecret -}}
{{- if $t.value -}}
{{- fail (printf "auth.tokens[%d] (%s): value is set but auth.existingSecret (%s) holds the tokens; put the token in that Secret (key %q) and remove value" $i $t.name $.Values.auth.existingSecret (default $t.name $t.secretKey)) -}}
{{- end -}}
{{- else if not $t.value -}}
{{- fail (printf "auth.tokens[%d] (%s): no token: set value (the chart makes a Secret), sha256, or auth.existingSecret with key %q" $i $t.name (default $t.name $t.secretKey)) -}}
{{- end -}}
{{- $out = append $out (dict "name" $t.name "key" (default $t.name $t.secretKey)) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
Passwords of the Redis users tokens run as (auth.tokens[].redisUser), as [{name, key}]: mounted from
the tokens Secret next to the tokens.
*/}}
{{- define "redis-gateway.redisUserPasswords" -}}
{{- $out := list -}}
{{- range $i, $t := .Values.auth.tokens -}}
{{- if $t.redisUser -}}
{{- $key := default (printf "%s-redis-password" $t.name) $t.redisPasswordKey -}}
{{- if and $.Values.auth.existingSecret $t.redisPassword -}}
{{- fail (printf "auth.tokens[%d] (%s): redisPassword is set but auth.existingSecret (%s) holds the secrets; put the password in that Secret (key %q) and remove redisPassword" $i $t.name $.Values.auth.existingSecret $key) -}}
{{- end -}}
{{- if and (not $.Values.auth.existingSecret) (not $t.redisPassword) -}}
{{- fail (printf "auth.tokens[%d] (%s): redisUser %q needs its password: set redisPassword (the chart makes a Secret), or auth.existingSecret with key %q" $i $t.name $t.redisUser $key) -}}
{{- end -}}
{{- $out = append $out (dict "name" $t.name "key" $key "value" ($t.redisPassword | default "")) -}}
{{- else if or $t.redisPassword $t.redisPasswordKey -}}
{{- fail (printf "auth.tokens[%d] (%s): redisPassword and redisPasswordKey are only used with redisUser" $i $t.name) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: the value, checked, or delay + timeout + 5. */}}
{{- define "redis-gateway.terminationGracePeriodSeconds" -}}
{{- $drain := add .Values.shutdown.delaySeconds .Values.shutdown.timeoutSeconds -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $drain 5 -}}
{{- else -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $drain) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be larger than shutdown.delaySeconds + shutdown.timeoutSeconds (%d): the kubelet would kill requests still draining" .Values.terminationGracePeriodSeconds $drain) -}}
{{- end -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* Cross-field checks that run on every render (included by the Deployment). */}}
{{- define "redis-gateway.validate" -}}
{{- if and .Values.discovery.kubernetes.enabled (not .Values.discovery.kubernetes.namespaces) -}}
{{- fail "discovery.kubernetes.namespaces: list at least one namespace, or [\"*\"] for every namespace" -}}
{{- end -}}
{{- if and (has "*" .Values.discovery.kubernetes.namespaces) (gt (len (without (uniq .Values.discovery.kubernetes.namespaces) "*")) 0) -}}
{{- fail (printf "discovery.kubernetes.namespaces: \"*\" (every namespace) must be the only element, but namespaces are listed with it (%s): write [\"*\"] alone, or the namespaces without \"*\"" (without (uniq .Values.discovery.kubernetes.namespaces) "*" | toJson)) -}}
{{- end -}}
{{- if and (not .Values.discovery.kubernetes.enabled) (not .Values.discovery.static.instances) -}}
{{- fail "discovery: with discovery.kubernetes.enabled false, list instances in discovery.static.instances (the gateway would have nothing to route to)" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) -}}
{{- fail (printf "autoscaling.maxReplicas (%v) must be at least autoscaling.minReplicas (%v)" .Values.autoscaling.maxReplicas .Values.autoscaling.minReplicas) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (kindIs "invalid" .Values.autoscaling.targetCPUUtilizationPercentage) (kindIs "invalid" .Values.autoscaling.targetMemoryUtilizationPercentage) -}}
{{- fail "autoscaling: set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage (or both)" -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled .Values.metrics.podMonitor.enabled -}}
{{- fail "serviceMonitor.enabled and metrics.podMonitor.enabled: choose one; both would scrape every pod twice (duplicate series)" -}}
{{- end -}}
{{- range $i, $e := .Values.extraEnv -}}
{{- if and (eq $e.name "GATEWAY_ZONE") (or $.Values.zone.fromPodLabel $.Values.zone.fixed) -}}
{{- fail (printf "extraEnv[%d]: GATEWAY_ZONE is set by the chart (zone.fromPodLabel, zone.fixed); set zone.fixed for one zone, or zone.fromPodLabel false to leave it to extraEnv" $i) -}}
{{- end -}}
{{- if and (eq $e.name "NODE_OPTIONS") $.Values.nodeOptions -}}
{{- fail (printf "extraEnv[%d]: NODE_OPTIONS is set by the chart (nodeOptions); put the options in nodeOptions (keep --max-semi-space-size=64 unless you mean to change it)" $i) -}}
{{- end -}}
{{- end -}}
{{- $_ := include "redis-gateway.secretTokens" . -}}
{{- $_ = include "redis-gateway.redisUserPasswords" . -}}
{{- $_ = include "redis-gateway.terminationGracePeriodSeconds" . -}}
{{- end -}}
