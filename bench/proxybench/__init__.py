"""The proxy benchmark behind ``bench/run.py``: servers, load runs, reports.

Standard library only, so the harness runs with any Python 3.11 and measures the gateway
from the outside, the way a user's load balancer would see it.
"""
