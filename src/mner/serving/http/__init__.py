"""The HTTP service's parts (``mner.serving.service`` builds the app from them): the request and response
schema, admission and limits, micro-batching, reading a request's post (JSON, multipart, urlencoded), and the
server with its read deadline."""
