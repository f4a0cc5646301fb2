"""KEDA's ScaledObject of a model with autoscaling.provider keda (the kind may not be served)."""

from kubento.builders.keda import KEDA_API_VERSION
from kubento.controller.kinds import SCALED_OBJECT, Kind
from kubento.controller.kinds.strip import meta_only

KIND = Kind(SCALED_OBJECT, KEDA_API_VERSION, "scaledobjects", meta_only)
