"""
title: Usage
description: A button under each answer that shows what OpenWebUI Monitor charged for it: tokens, cost and the balance now.
version: 1.0.0
requirements: httpx
license: MIT
"""

# Install in OpenWebUI under Admin Panel → Functions, enable it, and make it
# global (or enable it per model). Set the valves as for the filter:
# api_endpoint is where owmon listens (for example http://owmon:7878) and
# api_key is owmon's api_key (API_KEY). It only reads: the charge itself is
# made by a filter (openwebui_monitor_quiet.py or openwebui_monitor.py) or by
# owmon in front of OpenWebUI.
#
# OpenWebUI calls action(body, __user__, __event_emitter__, ...) when the
# button is pressed, with the message's chat in body["chat_id"] and the
# message's id in body["id"] (open_webui/utils/chat.py, chat_action: it
# passes form_data as body, and __user__ and __event_emitter__ when the
# signature names them). The action asks owmon's POST /api/v1/usage for that
# message and shows the answer as the message's status line.

from typing import Optional

import httpx
from pydantic import BaseModel, Field

MESSAGES = {
    "en": {
        "unavailable": "Usage monitor unavailable: {error}",
        "none": "No charge recorded for this message yet",
        "pending": " (still running)",
        "estimated": " (counted)",
        "stats": "Tokens: {input}+{output}{estimated} | Cost: {cost}{pending} | Balance: {balance}",
    },
    "zh": {
        "unavailable": "用量监控不可用: {error}",
        "none": "此消息尚无计费记录",
        "pending": "（进行中）",
        "estimated": "（估算）",
        "stats": "Token: {input}+{output}{estimated} | 费用: {cost}{pending} | 余额: {balance}",
    },
    "es": {
        "unavailable": "Monitor de uso no disponible: {error}",
        "none": "Este mensaje aún no tiene cargo registrado",
        "pending": " (en curso)",
        "estimated": " (estimado)",
        "stats": "Tokens: {input}+{output}{estimated} | Coste: {cost}{pending} | Saldo: {balance}",
    },
}


class Action:
    class Valves(BaseModel):
        api_endpoint: str = Field(default="http://owmon:7878", description="Where OpenWebUI Monitor listens")
        api_key: str = Field(default="", description="OpenWebUI Monitor's api_key (API_KEY)")
        language: str = Field(default="en", description="en, zh or es")
        timeout_seconds: float = Field(default=10.0, description="How long to wait for the monitor")

    def __init__(self):
        self.valves = self.Valves()

    def _text(self, key: str, **values) -> str:
        table = MESSAGES.get(self.valves.language, MESSAGES["en"])
        return table[key].format(**values)

    async def _usage(self, user: dict, chat_id: str, message_id: str) -> Optional[dict]:
        """The monitor's answer for the message, or None when it has no charge."""
        url = self.valves.api_endpoint.rstrip("/") + "/api/v1/usage"
        headers = {"Authorization": f"Bearer {self.valves.api_key}"}
        query = {"user": {"id": user.get("id", "")}, "chat_id": chat_id, "message_id": message_id}
        try:
            async with httpx.AsyncClient(timeout=self.valves.timeout_seconds) as client:
                response = await client.post(url, headers=headers, json=query)
            answer = response.json()
        except Exception as error:  # network, timeout or a non-JSON answer
            raise Exception(self._text("unavailable", error=error)) from error
        if response.status_code == 404:
            return None
        if answer.get("limit") and answer.get("error"):
            # A budget limit: its message says which, what was used and when it resets.
            raise Exception(answer["error"])
        if response.status_code != 200 or not answer.get("success"):
            raise Exception(self._text("unavailable", error=answer.get("error", response.status_code)))
        return answer

    async def action(
        self,
        body: dict,
        __user__: Optional[dict] = None,
        __event_emitter__=None,
    ) -> Optional[dict]:
        answer = await self._usage(__user__ or {}, body.get("chat_id") or "", body.get("id") or "")
        if answer is None:
            text = self._text("none")
        else:
            text = self._text(
                "stats",
                input=answer["inputTokens"],
                output=answer["outputTokens"],
                estimated=self._text("estimated") if answer.get("estimated") else "",
                cost=answer["totalCost"],
                pending=self._text("pending") if answer.get("status") == "pending" else "",
                balance=answer["balance"],
            )
        if __event_emitter__:
            await __event_emitter__({"type": "status", "data": {"description": text, "done": True}})
        return {"usage": answer, "description": text}
