"""``bastion scan``: a DAST scanner for the OWASP API Security Top 10, driven by an OpenAPI document."""
