"""
title: Usage Monitor (OpenWebUI Monitor)
description: Asks OpenWebUI Monitor for the user's balance before a chat and reports each answer after it.
version: 1.0.0
requirements: httpx
license: MIT
"""

# Install in OpenWebUI under Admin Panel → Functions, enable it, and make it
# global. Set the valves: api_endpoint is where owmon listens (for example
# http://owmon:7878) and api_key is owmon's api_key (API_KEY). The endpoints
# answer exactly as the monitor this one replaces, so older copies of the
# "Usage Monitor" function work unchanged.

import time
from typing import Optional

import httpx
from pydantic import BaseModel, Field

MESSAGES = {
    "en": {
        "unavailable": "Usage monitor unavailable: {error}",
        "insufficient": "Insufficient balance: {balance}",
        "stats": "Tokens: {input}+{output} | Cost: {cost} | Balance: {balance} | {seconds:.2f}s",
    },
    "zh": {
        "unavailable": "用量监控不可用: {error}",
        "insufficient": "余额不足: {balance}",
        "stats": "Token: {input}+{output} | 费用: {cost} | 余额: {balance} | {seconds:.2f}s",
    },
    "es": {
        "unavailable": "Monitor de uso no disponible: {error}",
        "insufficient": "Saldo insuficiente: {balance}",
        "stats": "Tokens: {input}+{output} | Coste: {cost} | Saldo: {balance} | {seconds:.2f}s",
    },
}


class Filter:
    class Valves(BaseModel):
        api_endpoint: str = Field(default="http://owmon:7878", description="Where OpenWebUI Monitor listens")
        api_key: str = Field(default="", description="OpenWebUI Monitor's api_key (API_KEY)")
        priority: int = Field(default=5, description="Filter priority")
        language: str = Field(default="en", description="en, zh or es")
        show_stats: bool = Field(default=True, description="Show tokens, cost and balance under each answer")
        timeout_seconds: float = Field(default=10.0, description="How long to wait for the monitor")

    def __init__(self):
        self.valves = self.Valves()
        self.started: dict = {}

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
        user = __user__ or {}
        answer = await self._post("/api/v1/inlet", user, body)
        if answer.get("balance", 0) <= 0:
            raise Exception(self._text("insufficient", balance=answer.get("balance", 0)))
        self.started[user.get("id", "")] = time.monotonic()
        return body

    async def outlet(self, body: dict, __user__: Optional[dict] = None, __event_emitter__=None) -> dict:
        user = __user__ or {}
        answer = await self._post("/api/v1/outlet", user, body)
        if self.valves.show_stats and __event_emitter__:
            seconds = time.monotonic() - self.started.pop(user.get("id", ""), time.monotonic())
            stats = self._text(
                "stats",
                input=answer["inputTokens"],
                output=answer["outputTokens"],
                cost=answer["totalCost"],
                balance=answer["newBalance"],
                seconds=seconds,
            )
            await __event_emitter__({"type": "status", "data": {"description": stats, "done": True}})
        return body
