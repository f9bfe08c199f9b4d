"""ComfyUI node classes (schema, validation, host hooks) on top of the transport and image I/O layers."""
