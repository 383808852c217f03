"""The data plane's socket I/O: the HTTP/1.1 server, the upstream pool, the worker process."""
