"""Alert System: which interests' airports crossed their thresholds, each crossing once.

Evaluates the Data Collector's events against every interest's thresholds and sends each
crossing (an airport over a user's upper threshold, or under the lower one) to the Alert
Notifier once. It has no API of its own (users set thresholds at the Data Collector): only
the operators' operations, liveness, readiness and metrics.
"""
