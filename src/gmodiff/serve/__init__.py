"""``gmodiff serve``: a local web page for photographers (drop brackets, compare, download).

The page is one static HTML/JS/CSS file served by FastAPI; reconstructions run one at a time on
a single background worker thread (:mod:`gmodiff.serve.jobs`) and results live in a temporary
folder that is removed on shutdown. Needs the ``ui`` extra (fastapi, uvicorn, python-multipart).
"""

from gmodiff.serve.config import ServeConfig

__all__ = ["ServeConfig"]
