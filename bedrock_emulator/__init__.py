"""A faithful local Amazon Bedrock Runtime for development and tests.

The gateway talks to Bedrock with SigV4-signed requests and relays Bedrock's
JSON and event-stream answers. This package answers the same operations
(InvokeModel, InvokeModelWithResponseStream, Converse, ConverseStream,
CountTokens) on the same paths, checks SigV4 signatures with an independent
verifier, and can be told, through markers in the prompt, to fail, slow down or
cut a stream the way Bedrock does, so every error path can be tested without
an AWS account.
"""
