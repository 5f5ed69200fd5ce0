"""Runs an OpenWebUI function file the way OpenWebUI calls it, for
cmd/owmon's TestShippedFunctions.

Reads a plan as JSON on stdin:
  {"file": path, "class": "Filter" or "Action", "valves": {...},
   "calls": [{"method": "inlet" | "outlet" | "action", "body": {...}, "user": {...}}]}
and prints one JSON list: per call, {"result", "error", "events"}, where
events are what the function sent to __event_emitter__. Like OpenWebUI, it
passes __user__ and __event_emitter__ only when the method names them.
"""

import asyncio
import importlib.util
import inspect
import json
import sys


async def run(plan):
    spec = importlib.util.spec_from_file_location("function_under_test", plan["file"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = getattr(module, plan["class"])()
    function.valves = function.Valves(**plan.get("valves", {}))
    results = []
    for call in plan["calls"]:
        events = []

        async def emit(event, events=events):
            events.append(event)

        method = getattr(function, call["method"])
        params = inspect.signature(method).parameters
        kwargs = {"body": call["body"]}
        if "__user__" in params:
            kwargs["__user__"] = call["user"]
        if "__event_emitter__" in params:
            kwargs["__event_emitter__"] = emit
        try:
            result = await method(**kwargs)
            results.append({"result": result, "error": None, "events": events})
        except Exception as error:
            results.append({"result": None, "error": str(error), "events": events})
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.load(sys.stdin)))))
