// tests/clients/clients.mjs — drive a running `basalt serve` with the real
// clients users have: the official openai SDK, LangChain's ChatOpenAI and the
// Vercel AI SDK (chat completions and Responses).  Prints PASS/FAIL lines.
//
//   BASALT_URL=http://127.0.0.1:PORT/v1 BASALT_MODEL=name node clients.mjs
//
// The served model has random weights, so assertions check what must hold
// whatever the text is: shapes, counts, determinism, and outputs forced by
// constrained decoding (named tool calls, JSON schemas).
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { ChatOpenAI } from "@langchain/openai";
import { generateText, streamText, tool, jsonSchema, stepCountIs } from "ai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { createOpenAI } from "@ai-sdk/openai";
import { z } from "zod";

const baseURL = process.env.BASALT_URL;
const model = process.env.BASALT_MODEL;
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const tests = [];
const test = (name, fn) => tests.push({ name, fn });
const assert = (cond, msg) => { if (!cond) throw new Error(msg); };
const eq = (a, b, msg) => assert(JSON.stringify(a) === JSON.stringify(b), `${msg}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`);

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather for a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string", maxLength: 20 }, unit: { type: "string", enum: ["c", "f"] } },
      required: ["city", "unit"],
      additionalProperties: false,
    },
    strict: true,
  },
};
const ask = [{ role: "user", content: "What is the weather in Paris?" }];

test("openai models list, auto-pagination and retrieve", async () => {
  const page = await client.models.list();
  assert(page.data.some((m) => m.id === model), "served model listed");
  const seen = [];
  for await (const m of client.models.list()) seen.push(m.id);
  assert(seen.includes(model), "auto-pagination yields the model");
  const m = await client.models.retrieve(model);
  eq(m.id, model, "retrieve id");
  eq(m.object, "model", "object");
});

test("openai typed errors: 404 unknown model, 400 bad parameter", async () => {
  try {
    await client.chat.completions.create({ model: "no-such-model", messages: ask });
    throw new Error("expected NotFoundError");
  } catch (e) {
    assert(e instanceof OpenAI.NotFoundError, `got ${e.constructor.name}: ${e.message}`);
  }
  try {
    await client.chat.completions.create({ model, messages: ask, temperature: "hot" });
    throw new Error("expected BadRequestError");
  } catch (e) {
    assert(e instanceof OpenAI.BadRequestError, `got ${e.constructor.name}: ${e.message}`);
    assert(/temperature/.test(e.message) || e.param === "temperature", "names the parameter");
  }
});

test("openai chat: non-streaming equals streaming (seeded greedy), usage adds up", async () => {
  const params = { model, messages: ask, max_tokens: 12, temperature: 0, seed: 7 };
  const r = await client.chat.completions.create(params);
  eq(r.object, "chat.completion", "object");
  eq(r.choices[0].message.role, "assistant", "role");
  assert(["length", "stop"].includes(r.choices[0].finish_reason), "finish_reason");
  assert(r.usage.completion_tokens <= 12 && r.usage.completion_tokens > 0, "completion tokens");
  eq(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens, "total");
  const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = "", roles = 0, usage = null, finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) roles++;
      text += c.delta.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  eq(text, r.choices[0].message.content ?? "", "streamed content");
  eq(roles, 1, "role appears once");
  eq(finish, r.choices[0].finish_reason, "finish_reason");
  // cached_tokens is left out: it reports the prefix cache's state, which the
  // first request filled (OpenAI's prompt caching varies the same way).
  const counts = (u) => [u.prompt_tokens, u.completion_tokens, u.total_tokens];
  eq(counts(usage), counts(r.usage), "usage chunk");
});

test("openai chat: n=2 and logprobs", async () => {
  const r = await client.chat.completions.create({
    model, messages: ask, max_tokens: 5, n: 2, seed: 3, logprobs: true, top_logprobs: 3,
  });
  eq(r.choices.map((c) => c.index), [0, 1], "choice indexes");
  for (const c of r.choices) {
    const lp = c.logprobs.content;
    assert(lp.length > 0 && lp.length <= 5, "one logprob per token");
    for (const t of lp) {
      assert(t.logprob <= 0, "logprob <= 0");
      eq(t.top_logprobs.length, 3, "top_logprobs");
      assert(t.top_logprobs[0].logprob >= t.top_logprobs[2].logprob, "sorted");
    }
  }
});

test("openai tools: forced call, tool result, answer (non-streaming)", async () => {
  const r = await client.chat.completions.create({
    model, messages: ask, tools: [weatherTool], max_tokens: 64,
    tool_choice: { type: "function", function: { name: "get_weather" } },
  });
  const msg = r.choices[0].message;
  eq(r.choices[0].finish_reason, "tool_calls", "finish_reason");
  eq(msg.tool_calls.length, 1, "one call");
  const call = msg.tool_calls[0];
  eq(call.function.name, "get_weather", "name");
  const args = JSON.parse(call.function.arguments);
  assert(typeof args.city === "string" && ["c", "f"].includes(args.unit), "arguments follow the schema");
  // The same tools as the first turn: their definitions are part of the
  // prompt, so only like for like shows the history growing it.
  const r2 = await client.chat.completions.create({
    model, max_tokens: 8, tools: [weatherTool],
    messages: [...ask, msg, { role: "tool", tool_call_id: call.id, content: '{"temp": 21}' }],
  });
  eq(r2.choices[0].message.role, "assistant", "answer role");
  assert(r2.usage.prompt_tokens > r.usage.prompt_tokens, "history grew the prompt");
});

test("openai tools: streaming deltas assemble into a valid call", async () => {
  const stream = await client.chat.completions.create({
    model, messages: ask, tools: [weatherTool], tool_choice: "required", max_tokens: 64, stream: true,
  });
  const calls = [];
  let finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      for (const d of c.delta.tool_calls ?? []) {
        if (!calls[d.index]) {
          assert(d.id && d.function?.name, "first delta carries id and name");
          calls[d.index] = { id: d.id, name: d.function.name, args: "" };
        } else {
          assert(!d.id, "id only in the first delta");
        }
        calls[d.index].args += d.function?.arguments ?? "";
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  eq(finish, "tool_calls", "finish_reason");
  eq(calls[0].name, "get_weather", "name");
  const args = JSON.parse(calls[0].args);
  assert(typeof args.city === "string", "arguments parse");
});

test("openai structured output: json_schema parsed by the SDK helper", async () => {
  const Answer = z.object({ city: z.string().max(16), population: z.number().int(), capital: z.boolean() });
  // Seeded: unseeded sampling of random weights sometimes spends the budget on
  // the whitespace JSON allows, and the SDK then (rightly) refuses to parse.
  const r = await client.chat.completions.parse({
    model, messages: ask, max_tokens: 96, seed: 1, response_format: zodResponseFormat(Answer, "answer"),
  });
  const parsed = r.choices[0].message.parsed;
  assert(parsed !== null, `parsed (content: ${r.choices[0].message.content})`);
  Answer.parse(parsed);
});

test("openai embeddings with SDK defaults (base64) are unit vectors", async () => {
  const r = await client.embeddings.create({ model, input: ["hello world", "hello world", "other"] });
  eq(r.data.length, 3, "three vectors");
  const [a, b, c] = r.data.map((d) => d.embedding);
  const norm = Math.sqrt(a.reduce((s, x) => s + x * x, 0));
  assert(Math.abs(norm - 1) < 1e-3, `unit norm, got ${norm}`);
  eq(a, b, "same input, same vector");
  assert(JSON.stringify(a) !== JSON.stringify(c), "different input, different vector");
  assert(r.usage.prompt_tokens > 0, "usage");
});

test("langchain ChatOpenAI invoke and stream", async () => {
  const llm = new ChatOpenAI({ model, apiKey: "unused", configuration: { baseURL }, temperature: 0, maxTokens: 8, seed: 5 });
  const out = await llm.invoke("Say hi");
  assert(typeof out.content === "string", "content is a string");
  let streamed = "";
  for await (const chunk of await llm.stream("Say hi")) streamed += chunk.content;
  eq(streamed, out.content, "stream equals invoke");
});

test("ai sdk generateText/streamText via chat completions", async () => {
  const provider = createOpenAICompatible({ name: "basalt", baseURL, apiKey: "unused" });
  const r = await generateText({ model: provider(model), prompt: "Say hi", maxOutputTokens: 8, temperature: 0, seed: 2 });
  assert(r.usage.outputTokens > 0, "usage");
  const s = streamText({ model: provider(model), prompt: "Say hi", maxOutputTokens: 8, temperature: 0, seed: 2 });
  let text = "";
  for await (const part of s.textStream) text += part;
  eq(text, r.text, "streamText equals generateText");
  const t = await generateText({
    model: provider(model), prompt: "Weather in Paris?", maxOutputTokens: 64,
    tools: { get_weather: tool({ description: "weather", inputSchema: jsonSchema(weatherTool.function.parameters) }) },
    toolChoice: { type: "tool", toolName: "get_weather" },
  });
  eq(t.toolCalls[0]?.toolName, "get_weather", "tool call through the AI SDK");
});

test("ai sdk generateText/streamText via the Responses API", async () => {
  const openai = createOpenAI({ baseURL, apiKey: "unused" });
  const r = await generateText({ model: openai.responses(model), prompt: "Say hi", maxOutputTokens: 8, temperature: 0 });
  assert(typeof r.text === "string" && r.usage.outputTokens > 0, "text and usage");
  const s = streamText({ model: openai.responses(model), prompt: "Say hi", maxOutputTokens: 8, temperature: 0 });
  let text = "";
  for await (const part of s.textStream) text += part;
  eq(text, r.text, "streamed Responses text equals generateText");
});

test("ai sdk multi-step tool use and a follow-up turn via the Responses API with the default store", async () => {
  const sent = [];
  const fetchLogged = async (url, init) => {
    if (init?.body) sent.push(JSON.parse(init.body));
    return fetch(url, init);
  };
  const openai = createOpenAI({ baseURL, apiKey: "unused", fetch: fetchLogged });
  const executed = [];
  const tools = {
    get_weather: tool({
      description: "weather", inputSchema: jsonSchema(weatherTool.function.parameters),
      execute: async (input) => { executed.push(input); return { temperature: 21 }; },
    }),
  };
  const question = [{ role: "user", content: "Weather in Paris?" }];
  const r = await generateText({
    model: openai.responses(model), messages: question, maxOutputTokens: 64, temperature: 0, tools,
    // the first step must call the tool, the second must answer in text
    prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? { type: "tool", toolName: "get_weather" } : "none" }),
    stopWhen: stepCountIs(2),
  });
  eq(executed.length, 1, "the tool ran once");
  assert(typeof executed[0].city === "string" && ["c", "f"].includes(executed[0].unit), "tool input follows the schema");
  eq(r.steps.length, 2, "two steps");
  eq(r.steps[0].toolCalls.length, 1, "step 1 called the tool");
  eq(r.steps[1].toolCalls.length, 0, "step 2 answered without tools");
  assert(r.text === r.steps[1].text && r.steps[1].usage.outputTokens > 0, "final text step");
  eq(sent.length, 2, "two requests");
  assert(sent.every((b) => b.store !== false), "store left at its default");
  assert(sent[1].input.some((i) => i.type === "function_call_output"), "step 2 carries the tool output");
  // The next turn: the SDK names the stored assistant message by its id
  // (item_reference) instead of sending its text again.
  const next = await generateText({
    model: openai.responses(model), messages: [...question, ...r.response.messages, { role: "user", content: "Thanks" }],
    maxOutputTokens: 8, temperature: 0, tools,
  });
  const refs = sent[2].input.filter((i) => i.type === "item_reference");
  assert(refs.length >= 1 && refs.every((i) => i.id.startsWith("msg_")), `item_reference: ${JSON.stringify(sent[2].input)}`);
  assert(next.usage.inputTokens > r.steps[1].usage.inputTokens, "the referenced history is in the prompt");
});

test("openai fine-tuning: upload, create, poll events, chat with the ft: model", async () => {
  // Four memorised pairs, learned by a LoRA job on the served model.
  const pairs = [["cat", "dog"], ["sun", "moon"], ["red", "blue"], ["owl", "fox"]];
  const jsonl = pairs.map(([q, a]) => JSON.stringify({ messages: [{ role: "user", content: q }, { role: "assistant", content: a }] })).join("\n") + "\n";
  const { toFile } = await import("openai");
  const file = await client.files.create({ file: await toFile(Buffer.from(jsonl), "pairs.jsonl"), purpose: "fine-tune" });
  eq([file.object, file.purpose, file.bytes], ["file", "fine-tune", Buffer.byteLength(jsonl)], "uploaded file");
  const job = await client.fineTuning.jobs.create({
    model, training_file: file.id, suffix: "sdk", seed: 3,
    method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 30, batch_size: 4, learning_rate_multiplier: 100, lora_rank: 8 } } },
  });
  eq([job.object, job.status, job.training_file], ["fine_tuning.job", "validating_files", file.id], "created job");
  let done = job;
  for (let i = 0; i < 600 && !["succeeded", "failed", "cancelled"].includes(done.status); i++) {
    await new Promise((r) => setTimeout(r, 200));
    done = await client.fineTuning.jobs.retrieve(job.id);
  }
  eq(done.status, "succeeded", `job ${JSON.stringify(done.error)}`);
  eq(done.fine_tuned_model, `ft:${model}:sdk:${job.id}`, "model name");
  const events = [];
  for await (const e of client.fineTuning.jobs.listEvents(job.id, { limit: 50 })) events.push(e);
  const metrics = events.filter((e) => e.type === "metrics").map((e) => e.data);
  eq(metrics.length, 30, "one metrics event per step");
  assert(metrics[0].step === 30 && metrics[metrics.length - 1].step === 1, "newest first");
  assert(metrics[0].train_loss < 0.1 * metrics[metrics.length - 1].train_loss, "the loss fell");
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert(models.some((m) => m.id === done.fine_tuned_model && m.parent === model), "listed with its parent");
  for (const [q, a] of pairs) {
    const r = await client.chat.completions.create({ model: done.fine_tuned_model, messages: [{ role: "user", content: q }], temperature: 0, max_tokens: 5 });
    eq(r.model, done.fine_tuned_model, "served by the tuned model");
    // this model's template trains the newline its assistant turns open with
    assert(r.choices[0].message.content.trimStart().startsWith(a), `${q} -> ${JSON.stringify(r.choices[0].message.content)}, want ${a}`);
  }
});

let failed = 0;
for (const { name, fn } of tests) {
  try {
    await fn();
    console.log(`PASS ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`.split("\n")[0]);
  }
}
process.exit(failed ? 1 : 0);
