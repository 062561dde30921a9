{{/* Names, labels and the checks every template relies on. */}}

{{- define "aiops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* release-aiops (or the release name alone when it already contains the chart's name). */}}
{{- define "aiops.fullname" -}}
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

{{/* Cluster-scoped objects carry the namespace too: one release name in two namespaces must not collide. */}}
{{- define "aiops.clusterName" -}}
{{- printf "%s-%s" (include "aiops.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{- define "aiops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aiops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aiops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "aiops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "aiops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "aiops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "aiops.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "aiops.postgres" -}}
{{- if .Values.database.postgres.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* Refuses value sets that cannot run safely; included by the Deployment. */}}
{{- define "aiops.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "aiops.postgres" .)) -}}
{{- fail (printf "replicaCount %d needs the PostgreSQL store (database.postgres.existingSecret): SQLite has one writer, and each SQLite pod would act on every alert" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.deployWorker .Values.rbac.create (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) -}}
{{- fail "deployWorker binds the deploy role (it creates Namespaces, Deployments, Jobs...) to the daemon's ServiceAccount: with serviceAccount.create=false, name that account (serviceAccount.name) rather than give those rights to the namespace's default account" -}}
{{- end -}}
{{- if not .Values.webhookToken.existingSecret -}}
{{- fail "webhookToken.existingSecret is required: the daemon listens beyond loopback only with a webhook token (kubectl create secret generic aiops-webhook-token --from-literal=token=$(openssl rand -hex 32))" -}}
{{- end -}}
{{- end -}}

{{/* The settings file: the chart's paths, then the user's settings and notify section. */}}
{{- define "aiops.settings" -}}
{{- $own := dict
  "listen" "0.0.0.0:9095"
  "webhook_token_file" "/var/run/secrets/aiops/webhook/token"
  "rules_dir" "/etc/aiops/rules"
  "playbooks_dir" "/etc/aiops/playbooks"
  "cluster" (dict "in_cluster" true)
-}}
{{- if not (include "aiops.postgres" .) -}}
{{- $_ := set $own "database_url" "sqlite:///var/lib/aiops/aiops.db?mode=rwc" -}}
{{- end -}}
{{- $settings := deepCopy .Values.settings -}}
{{- if .Values.deployWorker -}}
{{- $deploy := deepCopy (default (dict) (get $settings "deploy")) -}}
{{- $_ := set $deploy "worker" true -}}
{{- $_ := set $settings "deploy" $deploy -}}
{{- end -}}
{{- if .Values.notify.config -}}
{{- $_ := set $settings "notify" .Values.notify.config -}}
{{- end -}}
{{- toYaml (mergeOverwrite $settings $own) -}}
{{- end -}}
