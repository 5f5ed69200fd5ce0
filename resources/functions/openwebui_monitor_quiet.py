"""
title: Usage Monitor, quiet (OpenWebUI Monitor)
description: Charges every answer through OpenWebUI Monitor without showing anything under it; pair it with the "Usage" action to see a message's cost on demand.
version: 1.0.0
requirements: httpx
license: MIT
"""

# Install in OpenWebUI under Admin Panel → Functions, enable it, and make it
# global, instead of openwebui_monitor.py (not beside it: each would charge
# the same answer, and owmon would charge it once, but the balance check
# would run twice). Set the valves: api_endpoint is where owmon listens (for
# example http://owmon:7878) and api_key is owmon's api_key (API_KEY).
#
# Before each chat it asks /api/v1/inlet for the balance and refuses the chat
# at zero or below; after each answer /api/v1/outlet charges it. Nothing is
# written under the answer: users who want a message's cost press the button
# of openwebui_monitor_usage_action.py.

from typing import Optional

import httpx
from pydantic import BaseModel, Field

MESSAGES = {
    "en": {
        "unavailable": "Usage monitor unavailable: {error}",
        "insufficient": "Insufficient balance: {balance}",
    },
    "zh": {
        "unavailable": "用量监控不可用: {error}",
        "insufficient": "余额不足: {balance}",
    },
    "es": {
        "unavailable": "Monitor de uso no disponible: {error}",
        "insufficient": "Saldo insuficiente: {balance}",
    },
}


class Filter:
    class Valves(BaseModel):
        api_endpoint: str = Field(default="http://owmon:7878", description="Where OpenWebUI Monitor listens")
        api_key: str = Field(default="", description="OpenWebUI Monitor's api_key (API_KEY)")
        priority: int = Field(default=5, description="Filter priority")
        language: str = Field(default="en", description="en, zh or es")
        timeout_seconds: float = Field(default=10.0, description="How long to wait for the monitor")

    def __init__(self):
        self.valves = self.Valves()

    def _text(self, key: str, **values) -> str:
        table = MESSAGES.get(self.valves.language, MESSAGES["en"])
        return table[key].format(**values)

    async def _post(self, path: str, user: dict, body: dict) -> dict:
        url = self.valves.api_endpoint.rstrip("/") + path
        headers = {"Authorization": f"Bearer {self.valves.api_key}"}
        try:
            async with httpx.AsyncClient(timeout=self.valves.timeout_seconds) as client:
                response = await client.post(url, headers=headers, json={"user": user, "body": body})
            answer = response.json()
        except Exception as error:  # network, timeout or a non-JSON answer
            raise Exception(self._text("unavailable", error=error)) from error
        if answer.get("limit") and answer.get("error"):
            # A budget limit: its message says which, what was used and when it resets.
            raise Exception(answer["error"])
        if response.status_code != 200 or not answer.get("success"):
            raise Exception(self._text("unavailable", error=answer.get("error", response.status_code)))
        return answer

    async def inlet(self, body: dict, __user__: Optional[dict] = None) -> dict:
        answer = await self._post("/api/v1/inlet", __user__ or {}, body)
        if answer.get("balance", 0) <= 0:
            raise Exception(self._text("insufficient", balance=answer.get("balance", 0)))
        return body

    async def outlet(self, body: dict, __user__: Optional[dict] = None) -> dict:
        await self._post("/api/v1/outlet", __user__ or {}, body)
        return body
