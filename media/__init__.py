"""Media I/O: fetch result files (images, videos) with limits, decode images straight into ComfyUI IMAGE batches,
encode input images for fal, and turn videos into ComfyUI VIDEO objects (and back into files fal reads)."""
