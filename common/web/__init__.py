"""What both services' Flask apps share: the factory, errors, inputs, pages, probes, OpenAPI."""
