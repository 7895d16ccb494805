"""Code generated from protos/flight_tracker.proto by ``make proto``; never edit it by hand."""
