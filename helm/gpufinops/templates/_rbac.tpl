{{/* RBAC rules of the operator, in two parts: on namespaced objects (a Role in each
watched namespace when they are all named, else the ClusterRole) and on cluster-scoped
ones (always the ClusterRole). Each rule names the feature that needs it; docs/deploy.md
has the table. */}}

{{/* "true" when the release watches named namespaces only (no globs): Roles there. */}}
{{- define "gpufinops.namespaceRoles" -}}
{{- $named := not (empty .Values.watchNamespaces) }}
{{- range .Values.watchNamespaces }}
{{- if regexMatch "[*?\\[]" . }}{{ $named = false }}{{ end }}
{{- end }}
{{- if $named }}true{{ end }}
{{- end }}

{{- define "gpufinops.namespacedRules" }}
  # AIWorkload handlers and daemons: watch the workloads; Kopf keeps its
  # progress, diff base and finalizer in annotations/metadata (merge patch).
  - apiGroups: [gpufinops.dev]
    resources: [aiworkloads]
    verbs: [list, watch, patch]
  # Status conditions, observedGeneration, target, autoscaler memory.
  - apiGroups: [gpufinops.dev]
    resources: [aiworkloads/status]
    verbs: [patch]
  # Training: the Job made from a jobTemplate is owned by its AIWorkload with
  # blockOwnerDeletion, which API servers running the
  # OwnerReferencesPermissionEnforcement admission plugin allow only to who may
  # update the owner's finalizers (the plugin checks nothing else on the owner).
  - apiGroups: [gpufinops.dev]
    resources: [aiworkloads/finalizers]
    verbs: [update]
  # Events on AIWorkloads (spec accepted/rejected, scaling decisions).
  - apiGroups: [""]
    resources: [events]
    verbs: [create]
  # Inference autoscaling: the Deployments index (replicas, readiness).
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [list, watch]
  # Inference autoscaling: setting replicas through the scale subresource.
  - apiGroups: [apps]
    resources: [deployments/scale]
    verbs: [patch]
  {{- if .Values.rbac.spotInference }}
  # Spot replicas (spec.inference.spot): the target's pod template is read, and
  # one child Deployment per spot pool, owned by the AIWorkload, is created, kept
  # in sync with it (update) and deleted when its pool is unlisted or spot removed.
  # The admission policy lets only a user who may create Deployments in the
  # namespace set spot.
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [get, create, update, delete]
  # Spot replicas: pods on a node under an interruption notice get the lowest
  # pod-deletion-cost (removed first by the scale-down), and are evicted if they stay.
  - apiGroups: [""]
    resources: [pods]
    verbs: [patch]
  - apiGroups: [""]
    resources: [pods/eviction]
    verbs: [create]
  {{- end }}
  # Experiment sandboxes: StatefulSet targets (index), scaled to zero when idle.
  - apiGroups: [apps]
    resources: [statefulsets]
    verbs: [list, watch]
  - apiGroups: [apps]
    resources: [statefulsets/scale]
    verbs: [patch]
  {{- range .Values.rbac.scaleTargets }}
  # Inference autoscaling of other kinds (rbac.scaleTargets): read and set the
  # replicas through the scale subresource.
  - apiGroups: [{{ .apiGroup | quote }}]
    resources: [{{ printf "%s/scale" .resource | quote }}]
    verbs: [get, patch]
  {{- end }}
  # Training placement: the Jobs it creates (jobTemplate) or places (jobRef),
  # suspended until a pool is chosen and re-suspended to fall back.
  - apiGroups: [batch]
    resources: [jobs]
    verbs: [list, watch, create, patch]
  # Training placement of a jobRef's JobSet (harmless when JobSet is absent).
  - apiGroups: [jobset.x-k8s.io]
    resources: [jobsets]
    verbs: [list, watch, patch]
  # Conflict detection: an HPA already scaling the target Deployment.
  - apiGroups: [autoscaling]
    resources: [horizontalpodautoscalers]
    verbs: [list, watch]
  {{- if .Values.rbac.keda }}
  # Conflict detection: a KEDA ScaledObject already scaling the target.
  - apiGroups: [keda.sh]
    resources: [scaledobjects]
    verbs: [list, watch]
  {{- end }}
  # Idle node shutdown and cost: the indexes of pods per node and of
  # PodDisruptionBudgets. Kopf waits for every index before any handler runs,
  # so these are needed even with idle shutdown disabled.
  - apiGroups: [""]
    resources: [pods]
    verbs: [list, watch]
  - apiGroups: [policy]
    resources: [poddisruptionbudgets]
    verbs: [list, watch]
  {{- if and (include "gpufinops.ha" .) .Values.watchNamespaces }}
  # HA: Kopf peering in the watched namespaces, so only the highest-priority
  # replica acts. It watches all peering objects and writes its keep-alives
  # into its own one only.
  - apiGroups: [kopf.dev]
    resources: [kopfpeerings]
    verbs: [list, watch]
  - apiGroups: [kopf.dev]
    resources: [kopfpeerings]
    resourceNames: [{{ include "gpufinops.peeringName" . }}]
    verbs: [patch]
  {{- end }}
{{- end }}

{{- define "gpufinops.clusterRules" }}
  # The GPU nodes of each pool (an index; needed even with idle shutdown disabled).
  - apiGroups: [""]
    resources: [nodes]
    verbs: [list, watch]
  {{- $idle := include "gpufinops.idleShutdown" . | fromYaml }}
  {{- /* Only an instance with the node duties acts on nodes (see docs/deploy.md, Sharding). */}}
  {{- if not (include "gpufinops.nodeDuties" .) }}
  {{- $idle = dict "enabled" false "acting" false "providers" list }}
  {{- end }}
  {{- if $idle.enabled }}
  # Idle node shutdown: the idle timer and shutdown phase in node annotations,
  # the NoSchedule taint (replaced under a resourceVersion test: get, then patch).
  - apiGroups: [""]
    resources: [nodes]
    verbs: [get, patch]
  {{- end }}
  {{- if $idle.acting }}
  # Idle node shutdown (dryRun false): drain through the Eviction API.
  - apiGroups: [""]
    resources: [pods/eviction]
    verbs: [create]
  {{- end }}
  {{- if has "kubernetes" $idle.providers }}
  # Idle node shutdown, provider "kubernetes": delete the Node object.
  - apiGroups: [""]
    resources: [nodes]
    verbs: [delete]
  {{- end }}
  {{- if has "karpenter" $idle.providers }}
  # Idle node shutdown, provider "karpenter": delete the node's NodeClaim.
  - apiGroups: [karpenter.sh]
    resources: [nodeclaims]
    verbs: [list, delete]
  {{- end }}
  {{- if has "cluster-api" $idle.providers }}
  # Idle node shutdown, provider "cluster-api": mark the Machine for deletion
  # and lower its MachineDeployment by one.
  - apiGroups: [cluster.x-k8s.io]
    resources: [machines, machinedeployments]
    verbs: [get, patch]
  {{- end }}
  # Kopf: notice CRDs (ours, KEDA's) appearing or going away at run time.
  - apiGroups: [apiextensions.k8s.io]
    resources: [customresourcedefinitions]
    verbs: [list, watch]
  # Each namespace's labels: its team (gpufinops.dev/team) and which node pools
  # admit it (docs/security.md); also Kopf's --namespace globs.
  - apiGroups: [""]
    resources: [namespaces]
    verbs: [list, watch]
  {{- if and (include "gpufinops.ha" .) (not .Values.watchNamespaces) }}
  # HA: Kopf peering, so only the highest-priority replica acts. It watches all
  # peering objects and writes its keep-alives into its own one only.
  - apiGroups: [kopf.dev]
    resources: [clusterkopfpeerings]
    verbs: [list, watch]
  - apiGroups: [kopf.dev]
    resources: [clusterkopfpeerings]
    resourceNames: [{{ include "gpufinops.peeringName" . }}]
    verbs: [patch]
  {{- end }}
{{- end }}
