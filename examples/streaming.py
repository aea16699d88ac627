"""Stream a chat reply with Xinference's Python client, printing tokens as they arrive.

    python examples/streaming.py [--endpoint http://127.0.0.1:9997] [--model-uid gemma-3]
                                 [--max-tokens 128] ["your question"]

With "stream": True in generate_config, `chat` returns an iterator of OpenAI
`chat.completion.chunk` dicts instead of one response. The first chunk carries only
the role; the last carries the finish_reason and an empty delta.

The builtin gemma-3 is a base model, so expect a rambling answer.
"""

import argparse
import os
import sys
import time

from xinference.client import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("XINFERENCE_ENDPOINT", "http://127.0.0.1:9997"),
        help="REST endpoint of the cluster (default: $XINFERENCE_ENDPOINT or http://127.0.0.1:9997)",
    )
    parser.add_argument(
        "--model-uid", default="gemma-3", help="UID of a running chat model (default: gemma-3)"
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("prompt", nargs="?", default="Write a short poem about the sea.")
    args = parser.parse_args()

    try:
        stream_reply(args.endpoint, args.model_uid, args.prompt, args.max_tokens)
    except RuntimeError as e:  # the client raises RuntimeError with the server's message
        sys.exit(f"error: {e}")


def stream_reply(endpoint: str, model_uid: str, prompt: str, max_tokens: int) -> None:
    with Client(endpoint) as client:
        model = client.get_model(model_uid)
        start = time.perf_counter()
        chunks = model.chat(
            messages=[{"role": "user", "content": prompt}],
            generate_config={"stream": True, "max_tokens": max_tokens},
        )
        first_token_at = None
        pieces = 0
        finish_reason = None
        for chunk in chunks:
            for choice in chunk["choices"]:
                text = choice["delta"].get("content")
                if text:
                    if first_token_at is None:
                        first_token_at = time.perf_counter() - start
                    pieces += 1
                    print(text, end="", flush=True)
                finish_reason = choice.get("finish_reason") or finish_reason
        elapsed = time.perf_counter() - start

    print()
    ttft = f"{first_token_at:.2f}s" if first_token_at is not None else "n/a"
    print(
        f"[{pieces} chunks in {elapsed:.2f}s, first token after {ttft}, "
        f"finish_reason={finish_reason}]",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
