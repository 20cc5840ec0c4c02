"""Services behind the image API: config, errors, validation, storage, metadata, service."""
