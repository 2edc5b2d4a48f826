// tests/clients/batches.mjs — the Batch API end to end with the official
// openai SDK against a running `basalt serve`: upload an input file (purpose
// "batch"), create a batch mixing chat and embeddings lines, poll it to
// completion, read and check the output file, list batches with the SDK's
// auto-pagination, and cancel a second, long batch.  Prints PASS/FAIL lines.
//
//   BASALT_URL=http://127.0.0.1:PORT/v1 BASALT_MODEL=name node batches.mjs
import OpenAI, { toFile } from "openai";

const baseURL = process.env.BASALT_URL;
const model = process.env.BASALT_MODEL;
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const tests = [];
const test = (name, fn) => tests.push({ name, fn });
const assert = (cond, msg) => { if (!cond) throw new Error(msg); };
const eq = (a, b, msg) => assert(JSON.stringify(a) === JSON.stringify(b), `${msg}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const chatLine = (id, maxTokens) => ({
  custom_id: id, method: "POST", url: "/v1/chat/completions",
  body: { model, messages: [{ role: "user", content: `say ${id}` }], max_tokens: maxTokens },
});
const embLine = (id) => ({ custom_id: id, method: "POST", url: "/v1/embeddings", body: { model, input: `text ${id}` } });

async function upload(lines, name) {
  const jsonl = lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
  return client.files.create({ file: await toFile(Buffer.from(jsonl), name), purpose: "batch" });
}

// Retrieve until pred holds (60 s at most); the last object either way.
async function poll(id, pred) {
  let b;
  for (let i = 0; i < 600; i++) {
    b = await client.batches.retrieve(id);
    if (pred(b)) return b;
    await sleep(100);
  }
  throw new Error(`batch ${id} stuck in ${b.status}: ${JSON.stringify(b.request_counts)}`);
}

const created = [];

test("openai batches: create, poll to completion, read the output file", async () => {
  const lines = [chatLine("c1", 4), chatLine("c2", 4), chatLine("c3", 4), embLine("e1"), embLine("e2")];
  const file = await upload(lines, "batch.jsonl");
  eq(file.purpose, "batch", "file purpose");
  const batch = await client.batches.create({
    input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h", metadata: { run: "sdk" },
  });
  created.push(batch.id);
  eq([batch.object, batch.status, batch.input_file_id], ["batch", "validating", file.id], "created");
  const done = await poll(batch.id, (b) => ["completed", "failed", "expired", "cancelled"].includes(b.status));
  eq(done.status, "completed", `status (errors ${JSON.stringify(done.errors)})`);
  eq(done.request_counts, { total: 5, completed: 5, failed: 0 }, "request_counts");
  eq(done.metadata, { run: "sdk" }, "metadata");
  eq(done.error_file_id, null, "no error file");
  const meta = await client.files.retrieve(done.output_file_id);
  eq(meta.purpose, "batch_output", "output purpose");
  const text = await (await client.files.content(done.output_file_id)).text();
  const out = text.trim().split("\n").map((l) => JSON.parse(l));
  eq(out.map((o) => o.custom_id).sort(), ["c1", "c2", "c3", "e1", "e2"], "custom_ids");
  let total = 0;
  for (const o of out) {
    assert(o.id.startsWith("batch_req_") && o.error === null, `line ${o.custom_id} ok`);
    eq(o.response.status_code, 200, `${o.custom_id} status`);
    const body = o.response.body;
    eq(body.object, o.custom_id.startsWith("c") ? "chat.completion" : "list", `${o.custom_id} object`);
    if (body.object === "chat.completion") assert(body.usage.completion_tokens <= 4, "max_tokens held");
    else assert(body.data[0].embedding.length > 0, "an embedding");
    total += body.usage.total_tokens;
  }
  eq(done.usage.total_tokens, total, "batch usage sums the lines'");
});

test("openai batches: list with auto-pagination, cancel a long batch", async () => {
  const long = Array.from({ length: 60 }, (_, i) => chatLine(`l${i}`, 400));
  const file = await upload(long, "long.jsonl");
  const batch = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
  created.push(batch.id);
  const seen = [];
  for await (const b of client.batches.list({ limit: 1 })) seen.push(b.id);
  eq(seen.slice(0, 2), [...created].reverse(), "newest first, one per page");
  await poll(batch.id, (b) => b.request_counts.completed >= 1);
  const c = await client.batches.cancel(batch.id);
  assert(["cancelling", "cancelled"].includes(c.status), `cancel answered ${c.status}`);
  const done = await poll(batch.id, (b) => b.status === "cancelled");
  const n = done.request_counts.completed;
  assert(n >= 1 && n < 60, `partial: ${n} of 60`);
  const text = await (await client.files.content(done.output_file_id)).text();
  eq(text.trim().split("\n").length, n, "output lines = completed");
  try {
    await client.batches.cancel(batch.id);
    throw new Error("expected ConflictError");
  } catch (e) {
    assert(e instanceof OpenAI.ConflictError, `got ${e.constructor.name}: ${e.message}`);
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
