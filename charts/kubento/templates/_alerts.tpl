{{/*
kubento's alert rules: the `groups:` of a Prometheus rule file. One source for
the PrometheusRule (prometheusrule.yaml), the plain rule file in a ConfigMap
(prometheus-rules.yaml) and dist/kubento-rules.yaml (hack/render-install.sh).
Thresholds, `for` durations and severities are values (alerts.*).

Model series carry the labels the documented scrape configuration and the
PodMonitor set: namespace, model, revision (files/prometheus-scrape.yaml).
The operator's metrics carry each model's own namespace and model labels.
Prometheus templates in annotations are written {{`{{ ... }}`}} so that Helm
leaves them alone.
*/}}

{{/* BentoML counts every HTTP request; these endpoints are not the model's API
(probes, /metrics, docs and UI assets): kubento.rollout.analysis.is_infra. */}}
{{- define "kubento.infraEndpoints" -}}
/?|.*/(livez|readyz|healthz|metrics|docs\.json|schema\.json)/?|(.*/)?(static_content|assets)(/.*)?
{{- end -}}

{{- define "kubento.alertGroups" -}}
{{- $a := .Values.alerts -}}
{{- $w := $a.rateWindow -}}
{{- $api := printf "endpoint!~`%s`" (include "kubento.infraEndpoints" .) -}}
{{- $by := "namespace, model, revision" -}}
{{- $traffic := printf "sum by (%s) (rate(bentoml_service_request_total{%s}[%s])) > %v" $by $api $w $a.minRequestsPerSecond -}}
groups:
- name: kubento.models
  rules:
  - alert: KubentoModelNotReady
    expr: |
      max by (namespace, model) (kubento_model_ready) == 0
      unless on (namespace, model) max by (namespace, model) (kubento_model_phase{phase=~"Building|RolledBack"}) == 1
      unless on (namespace, model) (
        max by (namespace, model) (kubento_model_phase{phase="Progressing"}) == 1
        and on (namespace, model) max by (namespace, model) (kubento_model_condition{condition="Degraded", status="false"}) == 1
      )
    for: {{ $a.modelNotReady.for }}
    labels:
      severity: {{ $a.modelNotReady.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{`ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} is not Ready`}}
      description: >-
        {{`ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} has not been Ready`}} for {{ $a.modelNotReady.for }}
        {{`(Ready reason: {{ with printf "max by (reason) (kubento_model_condition{namespace=%q, model=%q, condition=\"Ready\"})" $labels.namespace $labels.model | query }}{{ . | first | label "reason" }}{{ else }}unknown{{ end }}).`}}
        {{`Its spec is not rolled out, or no replica answers. Run kubectl describe md {{ $labels.model }} -n {{ $labels.namespace }}:`}}
        the Ready condition names the cause (ImagePullBackOff, CrashLoopBackOff, OOMKilled, SecretNotFound, Unschedulable,
        ProgressDeadlineExceeded, BuildFailed) and the events say since when; fix the spec or what it refers to.
  - alert: KubentoModelUnavailable
    expr: |
      max by (namespace, model) (kubento_model_desired_replicas) > 0
      and on (namespace, model) max by (namespace, model) (kubento_model_ready_replicas) == 0
      and on (namespace, model) max by (namespace, model) (kubento_model_revision_info{role="stable"}) == 1
    for: {{ $a.modelUnavailable.for }}
    labels:
      severity: {{ $a.modelUnavailable.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{`ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} has no ready replica`}}
      description: >-
        {{`ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} served before but has had no ready replica`}}
        for {{ $a.modelUnavailable.for }}: its Service answers no request.
        {{`Run kubectl describe md {{ $labels.model }} -n {{ $labels.namespace }} and kubectl get pods -n {{ $labels.namespace }} -l serving.kubento.io/model-deployment={{ $labels.model }}:`}}
        the Ready and Degraded conditions name the cause (crash loop, OOMKilled, node or quota problems).
  - alert: KubentoModelRolledBack
    expr: |
      max by (namespace, model, reason) (kubento_model_condition{condition="RolledBack", status="true"}) == 1
    for: {{ $a.modelRolledBack.for }}
    labels:
      severity: {{ $a.modelRolledBack.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{`ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} was rolled back ({{ $labels.reason }})`}}
      description: >-
        {{`The new revision of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} failed ({{ $labels.reason }})`}}
        and kubento put the stable revision back: the model serves, but not the spec you applied. Run
        {{`kubectl describe md {{ $labels.model }} -n {{ $labels.namespace }} (the RolledBack condition says why) and`}}
        {{`kubento history {{ $labels.model }} -n {{ $labels.namespace }}; fix the model and change the spec to roll out again.`}}
  - alert: KubentoModelErrorRatioHigh
    expr: |
      (
        sum by ({{ $by }}) (rate(bentoml_service_request_total{http_response_code=~"5..", {{ $api }}}[{{ $w }}]))
        /
        sum by ({{ $by }}) (rate(bentoml_service_request_total{ {{- $api -}} }[{{ $w }}]))
      ) > {{ $a.errorRatio.threshold }}
      and on ({{ $by }}) {{ $traffic }}
    for: {{ $a.errorRatio.for }}
    labels:
      severity: {{ $a.errorRatio.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{`ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} answers {{ $value | humanizePercentage }} errors`}}
      description: >-
        {{`Revision {{ $labels.revision }} of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} answered {{ $value | humanizePercentage }}`}}
        of its API requests with 5xx over {{ $w }} (threshold {{ $a.errorRatio.threshold }}). Read the model server's logs
        {{`(kubectl logs -n {{ $labels.namespace }} -l serving.kubento.io/revision={{ $labels.revision }});`}}
        if this revision is a canary, kubento's analysis (rollout.analysis.maxErrorRate) rolls it back, or run
        {{`kubento abort {{ $labels.model }} -n {{ $labels.namespace }}.`}}
  - alert: KubentoModelLatencyHigh
    expr: |
      histogram_quantile(0.95, sum by ({{ $by }}, le) (rate(bentoml_service_request_duration_seconds_bucket{ {{- $api -}} }[{{ $w }}])))
      > {{ $a.latencyP95.thresholdSeconds }}
      and on ({{ $by }}) {{ $traffic }}
    for: {{ $a.latencyP95.for }}
    labels:
      severity: {{ $a.latencyP95.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{`ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} p95 latency is {{ $value | humanizeDuration }}`}}
      description: >-
        {{`Revision {{ $labels.revision }} of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} answers 5% of its API requests`}}
        {{`slower than {{ $value | humanizeDuration }}`}} over {{ $w }} (threshold {{ $a.latencyP95.thresholdSeconds }}s).
        Check whether it is saturated (kubento top, replicas at maxReplicas, CPU limits) or slowed by a dependency;
        add replicas or autoscaling, or raise resources.
  - alert: KubentoModelAtMaxReplicas
    expr: |
      max by (namespace, model) (kubento_model_desired_replicas)
        >= on (namespace, model) max by (namespace, model) (kubento_model_autoscaling_max_replicas)
      and on (namespace, model)
        max by (namespace, model) (kubento_model_autoscaling_max_replicas)
        > max by (namespace, model) (kubento_model_autoscaling_min_replicas)
    for: {{ $a.atMaxReplicas.for }}
    labels:
      severity: {{ $a.atMaxReplicas.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{`ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} is pinned at maxReplicas ({{ $value }})`}}
      description: >-
        {{`The autoscaler of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} has wanted its maxReplicas ({{ $value }})`}}
        for {{ $a.atMaxReplicas.for }}: the load needs more replicas than it may have, so requests queue and latency grows.
        Raise spec.autoscaling.maxReplicas (and check the cluster has room), or make each replica faster.
  - alert: KubentoModelBuildFailing
    expr: |
      max by (namespace, model, reason) (kubento_model_condition{condition="BuildSucceeded", status="false"}) == 1
    for: {{ $a.buildFailing.for }}
    labels:
      severity: {{ $a.buildFailing.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{`The build of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} failed ({{ $labels.reason }})`}}
      description: >-
        {{`The bento.build of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} failed ({{ $labels.reason }});`}}
        the revision that was serving keeps serving. The BuildSucceeded condition ends with the tail of the build log
        {{`(kubectl describe md {{ $labels.model }} -n {{ $labels.namespace }}). Fix the project (service.py, bentofile.yaml) or`}}
        its source; a changed source, timeoutSeconds or resources builds again.
  - alert: KubentoModelEnvironmentFailing
    expr: |
      max by (namespace, model, reason) (kubento_model_condition{condition="EnvironmentReady", status="false"}) == 1
    for: {{ $a.environmentFailing.for }}
    labels:
      severity: {{ $a.environmentFailing.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{`The Python environment of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} failed ({{ $labels.reason }})`}}
      description: >-
        {{`The Python packages of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} could not be prepared ({{ $labels.reason }});`}}
        the revision that was serving keeps serving. The EnvironmentReady condition names the package and ends with the tail of
        {{`pip's log (kubectl describe md {{ $labels.model }} -n {{ $labels.namespace }}). Fix the bento's requirements or`}}
        spec.python (index, caBundle, secretRef); a changed bento or index prepares again.
- name: kubento.data-quality
  # The operator's gauges (kubento.controller.quality): a score per revision and feature of the spec.
  rules:
  - alert: KubentoModelInputDrift
    expr: |
      max by (namespace, model, revision, feature) (kubento_model_input_drift) > {{ $a.inputDrift.threshold }}
    for: {{ $a.inputDrift.for }}
    labels:
      severity: {{ $a.inputDrift.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{`Feature {{ $labels.feature }} of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} drifted ({{ $value | printf "%.2f" }} from the reference)`}}
      description: >-
        {{`The distribution of feature {{ $labels.feature }} sent to revision {{ $labels.revision }} of ModelDeployment`}}
        {{`{{ $labels.namespace }}/{{ $labels.model }} is {{ $value | printf "%.2f" }} from the reference profile's`}}
        (Jensen-Shannon distance, 0 to 1; threshold {{ $a.inputDrift.threshold }}) over its statistics.window. See which
        {{`buckets moved with kubento drift {{ $labels.model }} -n {{ $labels.namespace }}: a client or an upstream`}}
        pipeline changed what it sends, or the world did (retrain, then profile the new data with kubento profile).
  - alert: KubentoModelFeatureMissing
    expr: |
      (
        (
          max by (namespace, model, revision, feature) (kubento_model_feature_missing_ratio)
          - on (namespace, model, revision, feature)
          max by (namespace, model, revision, feature) (kubento_model_feature_reference_missing_ratio)
        )
        or
        (
          max by (namespace, model, revision, feature) (kubento_model_feature_missing_ratio)
          unless on (namespace, model, revision, feature)
          max by (namespace, model, revision, feature) (kubento_model_feature_reference_missing_ratio)
        )
      ) > {{ $a.featureMissing.threshold }}
    for: {{ $a.featureMissing.for }}
    labels:
      severity: {{ $a.featureMissing.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{`Feature {{ $labels.feature }} of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} is missing in {{ $value | humanizePercentage }} more rows`}}
      description: >-
        {{`Revision {{ $labels.revision }} of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} gets feature`}}
        {{`{{ $labels.feature }} missing, null or unusable in {{ $value | humanizePercentage }} more of its input rows than the`}}
        reference profile (threshold {{ $a.featureMissing.threshold }}). A client stopped sending it or sends it empty;
        {{`the payload records (spec.monitoring.payloads) show which requests, kubento drift {{ $labels.model }} how many.`}}
  - alert: KubentoModelOutputShift
    expr: |
      max by (namespace, model, revision, against) (kubento_model_output_shift) > {{ $a.outputShift.threshold }}
    for: {{ $a.outputShift.for }}
    labels:
      severity: {{ $a.outputShift.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{`The answers of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} shifted ({{ $value | printf "%.2f" }} from {{ $labels.against }})`}}
      description: >-
        {{`Revision {{ $labels.revision }} of ModelDeployment {{ $labels.namespace }}/{{ $labels.model }} answers a distribution`}}
        {{`{{ $value | printf "%.2f" }} from the {{ $labels.against }} one`}} (Jensen-Shannon distance, 0 to 1; threshold
        {{ $a.outputShift.threshold }}). Against reference: the inputs drifted or the model changed behaviour; against
        stable: this new revision answers the same traffic differently (rollout.analysis.outputShift rolls it back).
        {{`Compare with kubento drift {{ $labels.model }} -n {{ $labels.namespace }}.`}}
- name: kubento.operator
  rules:
  - alert: KubentoOperatorDown
    expr: |
      max(up{job="{{ $a.operatorJob }}"}) == 0 or absent(up{job="{{ $a.operatorJob }}"})
    for: {{ $a.operatorDown.for }}
    labels:
      severity: {{ $a.operatorDown.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: The kubento operator is down or not scraped
      description: >-
        Prometheus has not scraped the kubento operator (job {{ $a.operatorJob }}) for {{ $a.operatorDown.for }}: models keep
        serving, but nothing rolls out, rolls back, scales or reports. Check the operator pod
        {{ printf "(kubectl -n %s get pods -l app.kubernetes.io/name=kubento; kubectl -n %s logs deployment/%s)" .Release.Namespace .Release.Namespace (include "kubento.fullname" .) }}
        and that metrics.port is set and scraped (README, Monitoring and alerts).
  - alert: KubentoOperatorNotReconciling
    expr: |
      sum(rate(kubento_reconcile_duration_seconds_count[{{ mul 2 (int .Values.resyncSeconds) }}s])) == 0
      and on () count(kubento_model_ready) > 0
    for: {{ $a.operatorNotReconciling.for }}
    labels:
      severity: {{ $a.operatorNotReconciling.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: The kubento operator runs but reconciles nothing
      description: >-
        The kubento operator has finished no reconcile pass for {{ $a.operatorNotReconciling.for }} although models exist
        (every model is re-checked every resyncSeconds): it is stuck or has lost its watches. Read its logs
        {{ printf "(kubectl -n %s logs deployment/%s)" .Release.Namespace (include "kubento.fullname" .) }} and restart it
        {{ printf "(kubectl -n %s rollout restart deployment/%s)" .Release.Namespace (include "kubento.fullname" .) }}.
  - alert: KubentoOperatorReconcileErrors
    expr: |
      sum(increase(kubento_reconcile_errors_total[{{ $w }}])) > 0
    for: {{ $a.reconcileErrors.for }}
    labels:
      severity: {{ $a.reconcileErrors.severity }}
      {{- with $a.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: The kubento operator keeps failing reconcile passes
      description: >-
        {{`The kubento operator failed {{ $value | printf "%.0f" }} reconcile passes in the last`}} {{ $w }}, for
        {{ $a.reconcileErrors.for }}: the API server refuses or times out its calls. Its logs
        {{ printf "(kubectl -n %s logs deployment/%s)" .Release.Namespace (include "kubento.fullname" .) }} name the
        model and the API's answer (RBAC, quota, admission webhooks, an overloaded API server).
{{- end -}}
