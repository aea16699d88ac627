from .handles import ChatModelHandle, GenerateModelHandle
from .restful_client import Client, RESTfulClient

__all__ = ["Client", "RESTfulClient", "ChatModelHandle", "GenerateModelHandle"]
