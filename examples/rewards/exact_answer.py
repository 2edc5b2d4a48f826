"""An AWS Lambda reward function in Bedrock's RFT format: 1.0 when the
model's final answer equals the reference answer, else 0.0.

Written once for Lambda; basalt runs it unchanged through
examples/rewards/lambda_runner.py, as an HTTP grader
({"type": "http", "url": ...}) or as a command grader
({"type": "command", "argv": ["python3", "lambda_runner.py", "exact_answer.py"]}).

Event: a list of {"id", "messages", "metadata": {"reference_answer", ...}}
(or {"trajectories": [...]}, as in the AWS blog's sample); the reference may
also sit at the top level of a sample.  The model output is the last
assistant message; its content may be a string or a list of text parts.
"""


def _text(content):
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _answer(messages):
    for m in reversed(messages or []):
        if m.get("role") == "assistant":
            return _text(m.get("content")).strip()
    return ""


def _reference(sample):
    ref = (sample.get("metadata") or {}).get("reference_answer", sample.get("reference_answer"))
    if isinstance(ref, dict):  # Bedrock examples nest the answer: {"answer": ...}
        ref = ref.get("answer", ref.get("compliant", ""))
    return str(ref if ref is not None else "").strip()


def lambda_handler(event, context):
    samples = event.get("trajectories", []) if isinstance(event, dict) else event
    results = []
    for s in samples:
        score = 1.0 if _answer(s.get("messages")) == _reference(s) else 0.0
        results.append({"id": s.get("id"), "aggregate_reward_score": score,
                        "metrics_list": [{"name": "exact_match", "value": score, "type": "Reward"}]})
    return results
