"""fal.ai queue transport: credentials, HTTP with retries, the queue protocol.

This layer knows nothing of ComfyUI or torch; the image I/O and node layers build on it.
"""
