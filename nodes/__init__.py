"""The thin ComfyUI layer: node schemas and the model patch."""
