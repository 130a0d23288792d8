"""Pure numpy geometry: intrinsics, back-projection, meshes, alignment, normals, metrics.

Nothing here imports torch, gradio or sqlalchemy.
"""
