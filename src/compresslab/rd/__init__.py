"""RD analysis: anchors, the anchor builder, BD-rate and its rules, comparability of curves, curve points and summaries.

Reads result files; computes no model output. Sits above ``evaluation`` (which produces rd.json)."""
