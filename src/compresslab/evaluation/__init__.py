"""Real-bitstream evaluation, anchors, BD-rate, RD curves and the file container."""
