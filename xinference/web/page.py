"""What every tab builder shares: the server's client, the language switch, the list
of running models, and the components whose texts follow the language switch."""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import gradio as gr

from ..client import Client
from .i18n import DEFAULT_LANGUAGE, Translator

# A launch of a large model may take many minutes; catalogue and list calls do not.
CLIENT_TIMEOUT_S = 30


@dataclass(repr=False)
class Page:
    endpoint: str
    # under --auth-config: a token of the user logged in to the page, by username
    token_for: Optional[Callable[[str], str]] = None
    blocks: Any = None  # the gr.Blocks being built: tabs add their own load listeners
    lang: Any = None  # gr.Radio: the language every handler translates into
    models: Any = None  # gr.State: {uid: description}, as GET /v1/models gives it
    _texts: List[Tuple[Any, Dict[str, str]]] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Page({self.endpoint!r})"

    def client(self) -> Client:
        # One client per call: handlers run in parallel threads, and a
        # requests.Session is not meant to be shared between threads.
        return Client(self.endpoint, api_key=self._api_key(), timeout=CLIENT_TIMEOUT_S)

    def _api_key(self) -> Optional[str]:
        """The logged-in user's token: the page calls the API as that user, with that
        user's permissions (Gradio keeps the request of the event being handled)."""
        if self.token_for is None:
            return None
        from gradio.context import LocalContext

        request = LocalContext.request.get(None)
        username = getattr(request, "username", None)
        return self.token_for(username) if username else None

    def make(self, factory: Callable[..., Any], texts: Dict[str, str], **kwargs: Any) -> Any:
        """`factory(**kwargs)` with the attributes in `texts` (attribute → text key)
        filled in the default language and re-translated when the switch moves."""
        t = Translator(DEFAULT_LANGUAGE)
        component = factory(**{attr: t(key) for attr, key in texts.items()}, **kwargs)
        self._texts.append((component, texts))
        return component

    @property
    def translated(self) -> List[Any]:
        return [component for component, _ in self._texts]

    def relabel(self, lang: str) -> List[Any]:
        """One update per component of `translated`, in the same order."""
        t = Translator(lang)
        updates = []
        for _, texts in self._texts:
            attrs: Dict[str, Any] = {attr: t(key) for attr, key in texts.items()}
            updates.append(gr.update(**attrs))
        return updates
