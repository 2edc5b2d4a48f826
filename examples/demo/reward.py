"""The reward of `basalt demo` (examples/demo/README.md): an AWS Lambda
handler in Bedrock's RFT reward format that scores a model's reply to an
"Uppercase: ..." instruction.

The reward is correctness: 1.0 when the reply is exactly the reference
answer (the input in capitals), else 0.0.  A second metric, word_accuracy,
gives the fraction of the reference's words that the reply has in the right
place; it is reported (it shows up in the job's metrics) but not rewarded,
so the model is pushed towards the whole answer, not towards most of it.

Runs unchanged on AWS Lambda (Python 3.9+, no dependencies) and under
basalt: `python3 examples/rewards/lambda_runner.py examples/demo/reward.py
--http 0` serves it for an "http" grader, and without --http it is a
"command" grader reading one event from stdin.

Event: a list of {"id", "messages", "metadata": {"reference_answer", ...}};
the reply is the last assistant message (a string or a list of text parts).
"""


def _reply(messages):
    for m in reversed(messages or []):
        if m.get("role") == "assistant":
            c = m.get("content")
            if isinstance(c, list):
                c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
            return (c or "").strip()
    return ""


def _score(reply, reference):
    exact = 1.0 if reply == reference else 0.0
    got, want = reply.split(), reference.split()
    words = sum(1 for a, b in zip(got, want) if a == b) / max(len(want), len(got), 1)
    return exact, words


def lambda_handler(event, context):
    results = []
    for sample in event:
        reference = str((sample.get("metadata") or {}).get("reference_answer", "")).strip()
        exact, words = _score(_reply(sample.get("messages")), reference)
        results.append({
            "id": sample.get("id"),
            "aggregate_reward_score": exact,
            "metrics_list": [
                {"name": "exact_match", "value": exact, "type": "Reward"},
                {"name": "word_accuracy", "value": words, "type": "Metric"},
            ],
        })
    return results
