{{- define "kubento.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubento.labels" -}}
app.kubernetes.io/name: kubento
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: kubento
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubento.selectorLabels" -}}
app.kubernetes.io/name: kubento
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubento.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubento.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* What the operator does in each watched namespace: nothing more. */}}
{{- define "kubento.namespacedRules" -}}
- apiGroups: [serving.kubento.io]
  resources: [modeldeployments]
  verbs: [get, list, watch]
- apiGroups: [serving.kubento.io]
  resources: [modeldeployments/status]
  verbs: [patch]
# Server-side apply creates and updates children (create + patch).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# Older revisions are resized without touching their templates.
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
# Services are watched unfiltered: one named like a model may be someone else's.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
# autoscaling.provider keda (only if KEDA is installed).
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch, create, patch, delete]
# Pod status tells image pull failures and crash loops.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# predictionChecks: the readiness gate condition kubento sets on each checked pod.
- apiGroups: [""]
  resources: [pods/status]
  verbs: [patch]
# Existence checks of the Secrets a ModelDeployment names, when its spec
# changes and while one is missing (never list/watch, never their data: the
# fetch and build containers read them as environment).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# bento.build: hash a ConfigMap project (watched: an edit rebuilds) and give
# its build Job an immutable copy of it; run and clean up build Jobs.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Each revision's Deployment is kept as a ControllerRevision (written once):
# a deleted revision Deployment is made again from it.
- apiGroups: [apps]
  resources: [controllerrevisions]
  verbs: [get, list, watch, create, delete]
# traffic.gateway: the model's Gateway API HTTPRoute (only if the Gateway API is installed).
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch, delete]
{{- end -}}

{{/* The tag of both images: image.tag, or the chart's appVersion. */}}
{{- define "kubento.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "kubento.operatorImage" -}}
{{- printf "%s/kubento-operator:%s" .Values.image.registry (include "kubento.imageTag" .) -}}
{{- end -}}

{{/* The default runtime image handed to the operator (KUBENTO_RUNTIME_IMAGE). */}}
{{- define "kubento.runtimeImage" -}}
{{- .Values.runtimeImage | default (printf "%s/bentoml-runtime:%s" .Values.image.registry (include "kubento.imageTag" .)) -}}
{{- end -}}
