"""Lets plain `adk web examples --session_service_uri adkpg+embedded://` (ADK's own CLI) use
adk-postgres: ADK imports this file from the agents directory before creating services."""

from adk_postgres.adk_services import register

register()
