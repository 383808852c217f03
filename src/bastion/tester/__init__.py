"""The tester: static audit of OpenAPI documents and gateway configs, consumer docs.

Nothing here is imported by the data plane (``proxy/``, ``stages/``, ``pipeline/``).
"""
