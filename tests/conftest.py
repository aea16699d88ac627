import os
import tempfile

# xoscar reads XOSCAR_DIR when it is imported: keep its sockets out of ~/.xoscar.
_XO_DIR = tempfile.mkdtemp(prefix="xo-tests-")
os.environ.setdefault("XOSCAR_DIR", _XO_DIR)
