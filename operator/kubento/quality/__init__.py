"""Data quality, the operator's half (pure): reference profiles
(kubento.quality.profile), what each revision is told and judged against,
and drift scores from the counts the model pods export
(kubento.quality.drift). The pods' half is kubento.runtime.monitor; the I/O
is kubento.controller.quality (the operator) and kubento.cli.quality."""
