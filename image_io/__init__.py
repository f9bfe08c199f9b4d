"""Image I/O: fetch result images (http(s) or data URIs), decode them, build ComfyUI IMAGE tensors."""
