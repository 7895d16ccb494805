"""The SLA breach detector: samples gauges through PromQL and raises a breach when they stray."""
