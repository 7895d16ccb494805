"""What the services' Flask apps share: the factory, errors, inputs, pages, probes, OpenAPI."""
