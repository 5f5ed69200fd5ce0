// Calls the gate through an official client library and prints, as one
// line of JSON, what that library shows the application when the call is
// refused. Run by caddymodule/sdk_test.go:
//
//	node refusal.mjs <sdk> <call> <base URL> <API key>
//
// sdk is openai (OpenWebUI's /api/chat/completions), openai-ollama (the
// same library on OpenWebUI's /ollama/v1/chat/completions), anthropic or
// ollama; call is chat or stream (and, for ollama, generate or
// generate-stream). The output is
//
//	{"status": <the status the library exposes>,
//	 "message": <the error's message>,
//	 "error": <the error field the library parsed from the body>,
//	 "apiMessage": <Anthropic's apiMessage>,
//	 "raw": <the body the gate sent, as the library's fetch received it>}
//
// or {"ok": true} if the call was not refused.
import Anthropic from "@anthropic-ai/sdk";
import { Ollama } from "ollama";
import OpenAI from "openai";

const [sdk, call, base, key] = process.argv.slice(2);
if (!sdk || !call || !base || !key) {
	console.error("usage: node refusal.mjs <openai|openai-ollama|anthropic|ollama> <chat|stream|generate|generate-stream> <base URL> <API key>");
	process.exit(2);
}

// The libraries read the answer through this fetch, which keeps a copy of
// the last body for the test to compare with what the library shows.
let raw = null;
async function recordingFetch(input, init) {
	const resp = await fetch(input, init);
	if (!resp.ok) raw = await resp.clone().text();
	return resp;
}

const messages = [{ role: "user", content: "Say hello." }];
const model = "gpt-4o";

async function drain(stream) {
	for await (const _ of stream) {
		// a refusal throws before the first chunk
	}
}

async function run() {
	switch (sdk) {
		case "openai":
		case "openai-ollama": {
			const baseURL = base + (sdk === "openai" ? "/api" : "/ollama/v1");
			const client = new OpenAI({ baseURL, apiKey: key, fetch: recordingFetch, maxRetries: 0 });
			if (call === "chat") return client.chat.completions.create({ model, messages });
			if (call === "stream") return drain(await client.chat.completions.create({ model, messages, stream: true }));
			break;
		}
		case "anthropic": {
			// The library posts to baseURL + "/v1/messages" with the key in x-api-key.
			const client = new Anthropic({ baseURL: base + "/api", apiKey: key, fetch: recordingFetch, maxRetries: 0 });
			if (call === "chat") return client.messages.create({ model, max_tokens: 64, messages });
			if (call === "stream") return drain(await client.messages.create({ model, max_tokens: 64, messages, stream: true }));
			break;
		}
		case "ollama": {
			const client = new Ollama({ host: base + "/ollama", headers: { Authorization: "Bearer " + key }, fetch: recordingFetch });
			if (call === "chat") return client.chat({ model, messages, stream: false });
			if (call === "stream") return drain(await client.chat({ model, messages, stream: true }));
			if (call === "generate") return client.generate({ model, prompt: "Say hello.", stream: false });
			if (call === "generate-stream") return drain(await client.generate({ model, prompt: "Say hello.", stream: true }));
			break;
		}
	}
	console.error(`unknown sdk or call: ${sdk} ${call}`);
	process.exit(2);
}

try {
	await run();
	console.log(JSON.stringify({ ok: true }));
} catch (err) {
	console.log(
		JSON.stringify({
			name: err?.constructor?.name ?? typeof err,
			// openai and Anthropic: APIError.status; ollama: ResponseError.status_code.
			status: err?.status ?? err?.status_code ?? null,
			message: err?.message ?? String(err),
			error: err?.error ?? null,
			apiMessage: err?.apiMessage ?? null,
			raw,
		}),
	);
}
