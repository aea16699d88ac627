"""Drive a running cluster with Xinference's Python client.

Lists the running models, launches gemma-3 under --model-uid if it is not running,
asks it one chat question and one plain completion, then terminates the model again
if this script launched it.

    python examples/chat_client.py [--endpoint http://127.0.0.1:9997] [--model-uid gemma-3]

The builtin gemma-3 is the *base* (not instruction-tuned) Gemma 3 270M: it continues
text, but its chat replies ramble or repeat the question. That is the model, not the client.
"""

import argparse
import os
import sys

from xinference.client import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("XINFERENCE_ENDPOINT", "http://127.0.0.1:9997"),
        help="REST endpoint of the cluster (default: $XINFERENCE_ENDPOINT or http://127.0.0.1:9997)",
    )
    parser.add_argument(
        "--model-uid", default="gemma-3", help="UID of the model (default: gemma-3)"
    )
    args = parser.parse_args()
    try:
        run(args.endpoint, args.model_uid)
    except RuntimeError as e:  # the client raises RuntimeError with the server's message
        sys.exit(f"error: {e}")


def run(endpoint: str, model_uid: str) -> None:
    with Client(endpoint) as client:
        running = client.list_models()
        print("Running models:", ", ".join(running) or "none")

        launched_here = False
        if model_uid not in running:
            print(f"Launching gemma-3 as {model_uid!r} ...")
            client.launch_model(
                model_name="gemma-3",
                model_engine="llama.cpp",
                model_format="ggufv2",
                model_size_in_billions="0_27",
                quantization="q4_k_m",
                model_uid=model_uid,
                n_ctx=2048,  # extra keyword arguments go to the engine
            )
            launched_here = True

        try:
            desc = client.describe_model(model_uid)
            print(
                f"{model_uid}: {desc['model_name']} {desc['model_format']} "
                f"{desc['model_size_in_billions']}B {desc['quantization']} on {desc['model_engine']}, "
                f"{desc['replica']} replica(s), context {desc['context_length']}, status {desc['status']}"
            )

            model = client.get_model(model_uid)

            reply = model.chat(
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                generate_config={"max_tokens": 48, "temperature": 0.2},
            )
            print("\nchat ->", reply["choices"][0]["message"]["content"].strip())
            print("usage:", reply["usage"])

            completion = model.generate(
                "The three primary colors are",
                generate_config={"max_tokens": 24, "temperature": 0},
            )
            print("\ngenerate ->", completion["choices"][0]["text"].strip())
            print("finish_reason:", completion["choices"][0]["finish_reason"])
        finally:
            if launched_here:
                client.terminate_model(model_uid)
                print(f"\nTerminated {model_uid}.")


if __name__ == "__main__":
    main()
