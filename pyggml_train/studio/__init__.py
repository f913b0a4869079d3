"""The workbench: compose a model spec from nodes in the browser, train it, watch it learn.

``create_app(data_dir)`` (app.py) is the ASGI app; ``pyggml-train studio`` serves it with
uvicorn. Needs the ``studio`` extra (starlette, uvicorn, websockets) and the npm assets
(assets.py).
"""
