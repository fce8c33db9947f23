"""A local web page to look at a generator and at training runs (`ganforge explore`).

The server (Starlette + uvicorn) renders on one worker where the latest request wins, reads runs read-only, and
serves only files inside the run folders it was given. `ganforge.explore.app.create_app` builds the app;
`ganforge.explore.cli.explore` is the command. Nothing here imports starlette until the app is built, so the
rest of ganforge works without the `explore` extra.
"""
