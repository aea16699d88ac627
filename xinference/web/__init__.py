"""The Gradio web UI (optional: `pip install "xinference[ui]"`). Built on the Python
client only; xinference.deploy mounts it on the REST server at /ui. Importing this
package does not import Gradio: `xinference.web.app` does."""
