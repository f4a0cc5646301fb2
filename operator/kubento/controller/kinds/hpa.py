"""The HorizontalPodAutoscaler of a model autoscaled on cpu/memory."""

from kubento.controller.kinds import HPA, Kind
from kubento.controller.kinds.strip import meta_only

KIND = Kind(HPA, "autoscaling/v2", "horizontalpodautoscalers", meta_only)
