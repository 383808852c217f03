"""A demo bookstore API to put behind Bastion: its app, its OpenAPI document, its server."""

from bastion.demo.app import create_app, openapi_path
from bastion.demo.server import DemoServer, serve_demo_api

__all__ = ["DemoServer", "create_app", "openapi_path", "serve_demo_api"]
