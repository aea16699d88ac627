"""Use the official `openai` package against Xinference's OpenAI-compatible API.

    pip install openai
    python examples/openai_sdk.py [--endpoint http://127.0.0.1:9997] [--model-uid gemma-3]

Point the SDK at <endpoint>/v1. The server does not check API keys, but the SDK
insists on one, so any non-empty string works. `model` is the model's UID.

The builtin gemma-3 is a base model: completions read well, chat replies ramble.
"""

import argparse
import os
import sys

from openai import APIError, OpenAI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("XINFERENCE_ENDPOINT", "http://127.0.0.1:9997"),
        help="REST endpoint of the cluster, without /v1 (default: $XINFERENCE_ENDPOINT or http://127.0.0.1:9997)",
    )
    parser.add_argument(
        "--model-uid", default="gemma-3", help="UID of a running model (default: gemma-3)"
    )
    args = parser.parse_args()
    try:
        run(args.endpoint, args.model_uid)
    except APIError as e:  # the SDK raises with the server's OpenAI-shaped error
        sys.exit(f"error: {e}")


def run(endpoint: str, model_uid: str) -> None:
    client = OpenAI(base_url=endpoint.rstrip("/") + "/v1", api_key="not-used")

    print("Models:", [m.id for m in client.models.list()])

    # Chat completion, whole response.
    chat = client.chat.completions.create(
        model=model_uid,
        messages=[{"role": "user", "content": "Name three fruits."}],
        max_tokens=48,
        temperature=0.3,
    )
    print("\nchat ->", chat.choices[0].message.content)
    print("finish_reason:", chat.choices[0].finish_reason, "| usage:", chat.usage)

    # Chat completion, streamed; the last chunk carries usage when asked for it.
    print("\nstream -> ", end="", flush=True)
    stream = client.chat.completions.create(
        model=model_uid,
        messages=[{"role": "user", "content": "Tell me about the moon."}],
        max_tokens=48,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
        if chunk.usage:
            print(f"\nusage: {chunk.usage}")

    # Plain text completion.
    completion = client.completions.create(
        model=model_uid,
        prompt="The three primary colors are",
        max_tokens=24,
        temperature=0,
        stop=["\n\n"],
    )
    print("\ncompletion ->", completion.choices[0].text)


if __name__ == "__main__":
    main()
