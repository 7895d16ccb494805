"""Alert System: which interests' airports crossed their thresholds, each crossing once."""
